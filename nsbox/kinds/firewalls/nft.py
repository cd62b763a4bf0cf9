"""nft: a node's native nftables rulesets (Firewall.nft, `nft -f` input), the kind the Docker
and kube-proxy nftables backends are written in.

Each ruleset is loaded by one `nft -f -` in the node's netns: nft loads a file as one
transaction, so a ruleset is in the kernel whole or not at all. Validation runs
`nft -c -f -` (check only) in a throwaway netns before anything is built."""

from __future__ import annotations

from nsbox.kinds.firewalls import FirewallKind, register


def first_error(stderr: str) -> str:
    """nft prints `/dev/stdin:3:9-12: Error: ...` then the line and carets: keep the first line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[0].replace("/dev/stdin:", "line ", 1) if lines else "refused"


def _model_check(lab) -> str | None:
    """A lab that uses nftables must say so (so it SKIPs where nft or nf_tables is missing)."""
    users = [n for n in lab.nodes.values() if n.firewall.nft]
    if users and "nftables" not in lab.requires:
        return (f"node {users[0].name} has an nftables ruleset: "
                f"add lab.require(\"nftables\") to recipe {lab.name}")
    return None


KIND = register(FirewallKind(
    name="nft", order=30, feature="nftables",
    inputs=lambda fw: list(fw.nft),
    commands=lambda fw: [("nft -f -", ruleset.rstrip("\n") + "\n") for ruleset in fw.nft],
    load_argv=lambda flavour, check: ["nft", *(["-c"] if check else []), "-f", "-"],
    refused=lambda stderr, text, i: f"nftables ruleset {i}: {first_error(stderr)}",
    save_argv=lambda flavour: ["nft", "list", "ruleset"],
    dumps=(("nftables.txt", ("nft", "list", "ruleset"), "nftables", True),),
    install_hint="apt install nftables",
    model_check=_model_check,
))
