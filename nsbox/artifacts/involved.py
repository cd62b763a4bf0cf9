"""Which namespaces explain a check: each check kind says (nsbox/kinds/checks/, `involved`);
a reach check's are its source, the owner of its destination, and the host node (where
the forwarding rules live)."""

from __future__ import annotations

from nsbox.kinds.checks import kind_of
from nsbox.model import Check, Lab


def involved_nodes(lab: Lab, check: Check) -> list[str]:
    """Node names in a stable order, as the check's kind names them (a reach check: source,
    destination owner, then host)."""
    out: list[str] = []
    for n in kind_of(check).involved(lab, check):
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
