"""A node's firewall into the kernel, kind by kind (nsbox/kinds/firewalls/): each kind's
inputs loaded by its own program, started in the netns the current thread is in.

Validation runs the same programs in their test mode (`iptables-restore --test`,
`nft -c -f -`) in a throwaway netns before anything is built: they parse the very text
nsbox would load and load every extension it names, and commit nothing. An unknown match,
a bad target option or an nft syntax error is then one line and exit 2, not a kernel
error after the lab is half built. (The model's parser, nsbox/model/rules.py, knows the
rule grammar, not every extension: that is libxtables' knowledge.)
"""

from __future__ import annotations

import os
import subprocess

from nsbox import tools
from nsbox.errors import InstallError, KernelError, ValidationError
from nsbox.host.programs import resolve_flavour, tool_env
from nsbox.kinds.firewalls import kinds
from nsbox.model.firewall import Firewall


def _run(prog: str, argv: list[str], text: str) -> subprocess.CompletedProcess:
    return subprocess.run([prog, *argv[1:]], input=text, capture_output=True, text=True, check=False,
                          env=tool_env())


def apply(node: str, firewall: Firewall, flavour: str = "legacy") -> None:
    """Load FIREWALL, kind by kind and input by input, into the netns the current thread is in.

    A child forked from this thread starts in the thread's netns (setns is per task)."""
    for kind in kinds():
        inputs = kind.inputs(firewall)
        if not inputs:
            continue
        argv = kind.load_argv(flavour, False)
        prog = tools.find(argv[0])
        if prog is None:
            raise InstallError(f"{argv[0]} is not installed ({kind.install_hint})")
        for i, text in enumerate(inputs, 1):
            done = _run(prog, argv, text)
            if done.returncode != 0 and (parts := kind.split(firewall, done.stderr)):
                for part, flags in parts:
                    done = _run(prog, [*argv, *flags], part)
                    if done.returncode != 0:
                        text = part
                        break
            if done.returncode != 0:
                raise KernelError(f"{node}: {os.path.basename(prog)}: {kind.refused(done.stderr, text, i)}")


def check_lab(lab, flavour: str = "auto") -> None:
    """ValidationError naming the node and the rule or ruleset a kind's program refuses,
    each input test-loaded in a throwaway netns."""
    from nsbox.host import netns

    for kind in kinds():
        if (why := kind.model_check(lab)) is not None:
            raise ValidationError(why)
    resolved = resolve_flavour(flavour)
    for kind in kinds():
        argv = kind.load_argv(resolved, True)
        for node in lab.nodes.values():
            inputs = kind.inputs(node.firewall)
            if not inputs:
                continue
            prog = tools.find(argv[0])
            if prog is None:
                if not kind.check_needs_program:
                    break  # the run says which package is missing; nothing to judge with here
                raise InstallError(f"{argv[0]} is not installed ({kind.install_hint})")
            for i, text in enumerate(inputs, 1):
                with netns.scratch():
                    done = _run(prog, argv, text)
                if done.returncode != 0:
                    raise ValidationError(f"node {node.name}: {kind.refused(done.stderr, text, i)}")
