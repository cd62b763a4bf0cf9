"""The iptables-save language read back: `iptables-save -c` output, parsed. Pure text;
nothing here runs a program. (What a node's Firewall restores as is its firewall kind's:
nsbox/kinds/firewalls/xtables.py.)"""

from __future__ import annotations

import re

from nsbox.errors import ValidationError
from nsbox.model import save
from nsbox.model.rules import parse_rule

FLAVOURS = ("auto", "nft", "legacy")


def saved_counters(text: str, only_drops: bool = False) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """`iptables-save -c` TEXT -> (table, chain) -> [(rule as rendered, packets)] in
    kernel order; the policy of a builtin chain is the entry "policy". ONLY_DROPS
    keeps only rules that jump to DROP or REJECT."""
    out: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for ln in save.lines(text):
        if ln.packets is None:
            continue  # without -c: nothing counted
        if ln.kind == "chain" and ln.policy != "-":
            out.setdefault((ln.table, ln.chain), []).append(("policy", ln.packets))
        elif ln.kind == "rule":
            spec = ln.spec
            if only_drops and not re.search(r" -j (DROP|REJECT)\b", " " + spec):
                continue  # parsing is the cost here (200 raw rules: ~7 ms); keep only what is asked for
            try:
                spec = parse_rule(spec).render()
            except ValidationError:
                pass  # a rule the model cannot express: never one of ours
            out.setdefault((ln.table, ln.chain), []).append((spec, ln.packets))
    return out
