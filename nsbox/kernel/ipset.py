"""A node's ipsets into the kernel: one `ipset restore` run in the node's netns (the
thread's current one), before the node's iptables restore that matches them.

ipsets are per network namespace (ip_set_core.c: ip_set_net_id), so they need no journal
entry of their own: they go with the namespace (a set still referenced by a rule is
destroyed after the rule, as the namespace's netfilter state is torn down)."""

from __future__ import annotations

import subprocess

from nsbox.errors import KernelError
from nsbox.model.ipsets import IPSet

INSTALL_HINT = "ipset is not installed (apt install ipset)"


def program() -> str | None:
    from nsbox import tools

    return tools.find("ipset")


def restore_text(sets: list[IPSet]) -> str:
    return "".join(line + "\n" for s in sets for line in s.restore_lines())


def apply(node: str, sets: list[IPSet]) -> None:
    """Create SETS with their entries in the netns the current thread is in."""
    prog = program()
    if prog is None:
        raise KernelError(f"{node}: {INSTALL_HINT}")
    done = subprocess.run([prog, "restore"], input=restore_text(sets), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        first = next((ln.strip() for ln in done.stderr.splitlines() if ln.strip()), f"exit {done.returncode}")
        raise KernelError(f"{node}: ipset restore: {first}")


from nsbox.host.programs import ipset_probe as probe  # noqa: E402,F401 - the feature probe lives with the host's
