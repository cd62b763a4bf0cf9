"""The iptables-save language as text: what a node's Firewall model restores as, and
`iptables-save -c` output read back. Pure text; nothing here runs a program."""

from __future__ import annotations

import re

from nsbox.errors import ValidationError
from nsbox.model.firewall import Firewall
from nsbox.model.rules import parse_rule

FLAVOURS = ("auto", "nft", "legacy")
FAMILIES = {4: "iptables", 6: "ip6tables"}


def restore_text(firewall: Firewall, family: int = 4) -> str:
    """The node's tables of FAMILY as {ip,ip6}tables-restore input (what `nsbox explain` shows, too)."""
    out = []
    for model in firewall.used_tables(family):
        out += [f"*{model.name}", *model.save_lines(), "COMMIT"]
    return "\n".join(out) + "\n"


RESTORE_CHUNK = 400  # rules per restore when one batch is too big (well under wmem_default)


def restore_chunks(firewall: Firewall, family: int = 4) -> list[tuple[str, list[str]]]:
    """FIREWALL's FAMILY tables as several restore inputs, in order: (text, extra flags)."""
    heads: list[str] = []
    rules: list[tuple[str, str]] = []
    for model in firewall.used_tables(family):
        lines = model.save_lines()
        heads += [f"*{model.name}", *[ln for ln in lines if ln.startswith(":")], "COMMIT"]
        rules += [(model.name, ln) for ln in lines if not ln.startswith(":")]
    out = [("\n".join(heads) + "\n", [])]
    for i in range(0, len(rules), RESTORE_CHUNK):
        text: list[str] = []
        table = None
        for name, line in rules[i:i + RESTORE_CHUNK]:
            if name != table:
                text += (["COMMIT"] if table else []) + [f"*{name}"]
                table = name
            text.append(line)
        out.append(("\n".join(text + ["COMMIT"]) + "\n", ["--noflush"]))
    return out


def saved_counters(text: str, only_drops: bool = False) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """`iptables-save -c` TEXT -> (table, chain) -> [(rule as rendered, packets)] in
    kernel order; the policy of a builtin chain is the entry "policy". ONLY_DROPS
    keeps only rules that jump to DROP or REJECT."""
    out: dict[tuple[str, str], list[tuple[str, int]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif m := re.match(r"^:(\S+) (\S+) \[(\d+):\d+\]", line):
            if m.group(2) != "-":
                out.setdefault((table, m.group(1)), []).append(("policy", int(m.group(3))))
        elif m := re.match(r"^\[(\d+):\d+\] -A (\S+) (.*)$", line):
            spec = m.group(3)
            if only_drops and not re.search(r" -j (DROP|REJECT)\b", spec):
                continue  # parsing is the cost here (200 raw rules: ~7 ms); keep only what is asked for
            try:
                spec = parse_rule(spec).render()
            except ValidationError:
                pass  # a rule the model cannot express: never one of ours
            out.setdefault((table, m.group(2)), []).append((spec, int(m.group(1))))
    return out
