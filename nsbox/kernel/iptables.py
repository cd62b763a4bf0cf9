"""Write a node's Firewall model where the distribution's `iptables` looks.

Two flavours share the iptables-save language the model is written in:

- nft (Debian 12, Ubuntu 24.04: `iptables` is xtables-nft-multi),
- legacy (xtables: `iptables` is xtables-legacy-multi).

Either way a node's tables of one family go to the kernel in ONE
`{ip,ip6}tables-<flavour>-restore` run started in the node's netns: one atomic
transaction, as dockerd and kube-proxy apply theirs, and plain `iptables -S` /
`iptables-save` in the lab show them. Rule counters are read back the same way
(`<flavour>-save -c`), so checks on counters pass under both.

python-iptables is no longer on the run path: host/features.py probes NAT in
the backend the rules go to, without it (its import ran ldconfig and gcc, ~0.4 s
a run). Only `nsbox doctor` still loads it, to report it (see _iptc).

The iptables programs read XTABLES_LIBDIR (and python-iptables IPTABLES_LIBDIR)
to find extension libraries and dlopen them from any directory: a variable left
in root's environment (sudo -E, a CI runner) would run its code as root. They
are removed from what these programs and python-iptables see (tool_env).

`auto` picks what `iptables` resolves to on this system.
"""

from __future__ import annotations

import os
import subprocess

from nsbox.errors import KernelError
from nsbox.host.programs import program, tool_env
from nsbox.model.firewall import Firewall
from nsbox.wire.iptables import FAMILIES, restore_chunks, restore_text


def apply(node: str, firewall: Firewall, flavour: str = "legacy") -> None:
    """Apply FIREWALL to the netns the current thread is in: one restore per family.

    A child forked from this thread starts in the thread's netns (setns is per task)."""
    for family in FAMILIES:
        text = restore_text(firewall, family)
        if text == "\n":
            continue
        prog = program(family, flavour, "restore")
        done = subprocess.run([prog], input=text, capture_output=True, text=True, check=False, env=tool_env())
        if done.returncode != 0 and "Message too long" in done.stderr:
            # The whole ruleset is one nf_tables batch. iptables-nft raises its socket's
            # send buffer with SO_SNDBUFFORCE, which needs CAP_NET_ADMIN in the initial
            # user namespace: inside the sandbox a batch is capped at
            # net.core.wmem_default (~208 KB, ~1,000 rules). Then the tables go in as
            # several restores: chains and policies first, rules in chunks (--noflush).
            for chunk, flags in restore_chunks(firewall, family):
                done = subprocess.run([prog, *flags], input=chunk, capture_output=True, text=True, check=False,
                                      env=tool_env())
                if done.returncode != 0:
                    break
        if done.returncode != 0:
            detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise KernelError(f"{node}: {os.path.basename(prog)}: {detail}")
