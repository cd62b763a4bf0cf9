"""A node's native nftables rulesets (`nft -f` input), the firewall kind the Docker
and kube-proxy nftables backends are written in.

Each ruleset is applied by one `nft -f -` started in the node's netns: nft loads a
file as one transaction, so a ruleset is in the kernel whole or not at all.
Validation runs `nft -c -f -` (check only) in a throwaway netns before anything is
built, so a syntax or kernel error is one line and exit 2."""

from __future__ import annotations

import subprocess

from nsbox.errors import KernelError, ValidationError
from nsbox.host.programs import nft
from nsbox.model.lab import Lab
from nsbox.wire.nftables import first_error as _first_error


def _load(text: str, check: bool) -> subprocess.CompletedProcess:
    argv = [nft(), *(["-c"] if check else []), "-f", "-"]
    return subprocess.run(argv, input=text, capture_output=True, text=True, check=False)


def apply(node: str, rulesets: list[str]) -> None:
    """Load RULESETS, in order, into the netns the current thread is in."""
    for i, text in enumerate(rulesets, 1):
        done = _load(text, check=False)
        if done.returncode != 0:
            raise KernelError(f"{node}: nft -f (ruleset {i}): {_first_error(done.stderr)}")


def check_lab(lab: Lab) -> None:
    """ValidationError for a ruleset nft refuses, tried in a throwaway netns; a lab
    that uses nftables must say so with lab.require("nftables") (so it SKIPs where
    nft or nf_tables is missing)."""
    from nsbox.host import netns

    users = [n for n in lab.nodes.values() if n.firewall.nft]
    if not users:
        return
    if "nftables" not in lab.requires:
        raise ValidationError(f"node {users[0].name} has an nftables ruleset: "
                              f"add lab.require(\"nftables\") to recipe {lab.name}")
    for node in users:
        for i, text in enumerate(node.firewall.nft, 1):
            with netns.scratch():
                done = _load(text, check=True)
            if done.returncode != 0:
                raise ValidationError(f"node {node.name}: nftables ruleset {i}: {_first_error(done.stderr)}")
