"""Which namespaces explain a check: its source, the owner of its destination,
and the host node (where the forwarding rules live)."""

from __future__ import annotations

from nsbox.model import HOST, BindCheck, InterfacesCheck, Check, ConntrackCheck, Lab, LinkCheck, ReachCheck


def involved_nodes(lab: Lab, check: Check) -> list[str]:
    """Node names in a stable order: source, destination owner, then host."""
    if isinstance(check, ReachCheck):
        target = lab.target(check.src, check.dst, check.proto, check.port, check.family)
        nodes = [lab.netns_of(check.src).name, *([target.node.name] if target.node else []), HOST]
    elif isinstance(check, LinkCheck) or type(check).__name__ == "RouteCheck":
        nodes = [check.node]
    elif type(check).__name__ == "NeighCheck":
        nodes = [lab.netns_of(check.node).name]
    elif isinstance(check, BindCheck):
        nodes = [lab.netns_of(check.container).name]
    elif isinstance(check, InterfacesCheck):
        nodes = [lab.netns_of(check.node).name]
    else:
        assert isinstance(check, ConntrackCheck)
        of = next(c for c in lab.checks if c.name == check.of)
        nodes = [check.node, *involved_nodes(lab, of)]
    out: list[str] = []
    for n in nodes:
        if n in lab.nodes and n not in out:
            out.append(n)
    return out


def slug(name: str) -> str:
    """A check name as a file name: 'tcp/7 c1->c2' -> 'tcp-7_c1-c2'."""
    out = []
    for ch in name:
        if ch.isalnum() or ch in "._":
            out.append(ch)
        elif ch == " ":
            out.append("_")
        else:
            out.append("-")
    text = "".join(out)
    while "--" in text:
        text = text.replace("--", "-")
    # No leading dot: never "..", never a hidden file.
    return text.strip("-_.")[:80] or "check"
