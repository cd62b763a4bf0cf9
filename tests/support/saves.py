"""Reading `iptables-save` text as the tests' own observer (never nsbox's parser)."""

from __future__ import annotations

import re


def tables_in_order(text: str) -> dict[str, list[str]]:
    """table -> its chain and rule lines in the order printed, without comments, counters
    and COMMIT. Backends print tables in different orders (nft: as created; legacy: as
    loaded), so tables are compared by name and the lines within them in order."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:]
            tables[current] = []
        elif line == "COMMIT":
            current = None
        else:
            assert current is not None, f"rule outside a table: {line!r}"
            tables[current].append(re.sub(r"\s*\[\d+:\d+\]$", "", line))
    return tables
