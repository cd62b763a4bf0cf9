"""`nft list ruleset` output read back. Pure text."""

from __future__ import annotations

import re

_COUNTER = re.compile(r"\s*counter packets (\d+) bytes \d+")


def listed_rules(text: str) -> list[tuple[str, str, int | None]]:
    """`nft list ruleset` text -> (chain as "FAMILY TABLE CHAIN", rule text without its counter,
    packets or None for a rule without a counter), in order."""
    out: list[tuple[str, str, int | None]] = []
    family = table = chain = None
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"^table (\S+) (\S+) \{$", line)
        if m:
            family, table, chain = m.group(1), m.group(2), None
            continue
        m = re.match(r"^chain (\S+) \{$", line)
        if m:
            chain = m.group(1)
            continue
        if line == "}":
            chain = None  # a chain's end (a table's end leaves no chain open either)
            continue
        if not line or chain is None or line.startswith(("type ", "policy ")):
            continue
        c = _COUNTER.search(line)
        out.append((f"{family} {table} {chain}", _COUNTER.sub("", line).strip(), int(c.group(1)) if c else None))
    return out


def matching(rules: list[tuple[str, str, int | None]], chain: str, spec: str, drops: bool = True) -> list[int]:
    """Indexes of the rules of CHAIN ("FAMILY TABLE CHAIN") whose text holds SPEC and that drop
    (DROPS False: whatever their verdict, as counted_by names them)."""
    return [i for i, (ch, text, _) in enumerate(rules)
            if ch == chain and spec in text and (not drops or re.search(r"\b(drop|reject)\b", text))]
