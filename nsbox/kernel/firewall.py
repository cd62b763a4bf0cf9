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


def check_lab(lab, flavour: str = "auto", batched: bool = False) -> None:
    """ValidationError naming the node and the rule or ruleset a kind's program refuses,
    each input test-loaded in a throwaway netns (with the node's ipsets made there first:
    iptables refuses a rule matching a set that does not exist). BATCHED: start_batch()
    has already accepted the batchable kinds' inputs, so only the others are loaded."""
    from nsbox.host import netns

    for kind in kinds():
        if (why := kind.model_check(lab)) is not None:
            raise ValidationError(why)
    resolved = resolve_flavour(flavour)
    for kind in kinds():
        if batched and kind.batchable and not own_check(lab):
            continue
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
                    if node.ipsets and not _sets_made(node):
                        break  # no ipset here: the run SKIPs (lab.require("ipset")), nothing to judge
                    done = _run(prog, argv, text)
                if done.returncode != 0:
                    raise ValidationError(f"node {node.name}: {kind.refused(done.stderr, text, i)}")


class Batch:
    """start_batch()'s test-loads, started and still running while the caller does the
    rest of what comes before the build (feature probes, sysctl checks).

    One program per lab and kind, all at once, each in a scratch netns of its own. With
    iptables-nft each COMMIT is a kernel transaction that registers and unregisters the
    base chains' hooks, ~12 ms of waiting for RCU grace periods, not of CPU: `nsbox run
    --all`'s 107 COMMITs in one program per kind took 1.1 s + 0.3 s; side by side the
    waits overlap."""

    def __init__(self) -> None:
        self._running: list[tuple[int, subprocess.Popen]] = []  # (id of the lab, its program)
        self._refused: set[int] = set()  # labs a program refused, or that lack one

    def _wait(self) -> None:
        running, self._running = self._running, []
        try:
            while running:
                key, proc = running[0]
                proc.communicate()
                running.pop(0)
                if proc.returncode != 0:
                    self._refused.add(key)
        except BaseException:
            for _, proc in running:
                proc.kill()
                proc.wait()
            raise

    def accepted(self, lab: object | None = None) -> bool:
        """Whether the programs accepted LAB's rules (every lab's, without LAB). A lab
        none of them loaded (no batchable rules, or ipsets: own_check) counts as accepted:
        check_lab() then tests what it has."""
        self._wait()
        return not self._refused if lab is None else id(lab) not in self._refused


def start_batch(labs: list, flavour: str = "auto") -> Batch:
    """The batchable kinds' test-loads of LABS, started: Batch.accepted() answers."""
    from nsbox.host import netns

    batch = Batch()
    resolved = resolve_flavour(flavour)
    try:
        for kind in kinds():
            if not kind.batchable:
                continue
            argv = kind.load_argv(resolved, True)
            prog = tools.find(argv[0])
            for lab in labs:
                text = "".join(t for node in lab.nodes.values() for t in kind.inputs(node.firewall))
                if not text or own_check(lab):
                    continue
                if prog is None:
                    batch._refused.add(id(lab))  # check_lab says what is missing
                    continue
                with netns.scratch():  # the child keeps the scratch netns alive until it ends
                    proc = subprocess.Popen([prog, *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, text=True, env=tool_env())
                batch._running.append((id(lab), proc))
                try:
                    proc.stdin.write(text)
                    proc.stdin.close()
                except BrokenPipeError:  # it refused the text before reading it all
                    pass
    except BaseException:
        for _, proc in batch._running:
            proc.kill()
            proc.wait()
        raise
    return batch


def own_check(lab) -> bool:
    """The lab's rules are judged by check_lab() alone, never in start_batch()'s batch: its
    sets must exist first, and two nodes' set names may clash in one netns."""
    return any(node.ipsets for node in lab.nodes.values())


def _sets_made(node) -> bool:
    """The node's ipsets made in the scratch netns (they go with it), as the build makes them."""
    from nsbox.kernel import ipset

    try:
        ipset.apply(node.name, list(node.ipsets.values()))
    except KernelError:
        return False
    return True
