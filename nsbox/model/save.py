"""The one reader of iptables-save / iptables-restore text (`-c` counters included).

`iptables-save [-c]` output, an `iptables-restore` payload (kube-proxy's, with `-X`),
Docker's golden files and nsbox's own restore text are one line language:

    *TABLE
    :CHAIN POLICY [PACKETS:BYTES]      (POLICY "-" for a user chain; counters optional)
    [PACKETS:BYTES] -A CHAIN SPEC      (counters only with -c)
    -X CHAIN                           (restore payloads: delete a chain)
    COMMIT

`lines()` turns text into `SaveLine`s in order, so each user (rule counters, the
external verifier's model of a real host, the kits reading their renderers back) only
says what it does with a table, a chain or a rule. Blank lines, `#` comments and
COMMIT carry nothing and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal

_CHAIN = re.compile(r"^:(\S+)(?: (\S+))?(?: \[(\d+):(\d+)\])?\s*$")
_COUNTED = re.compile(r"^\[(\d+):(\d+)\]\s+(.*)$")


class SaveSyntaxError(ValueError):
    """A line that is none of the above, or a chain/rule before any `*TABLE` (strict mode)."""

    def __init__(self, n: int, raw: str, why: str) -> None:
        super().__init__(f"line {n}: {why}: {raw!r}")
        self.n, self.raw, self.why = n, raw, why


@dataclass(frozen=True)
class SaveLine:
    n: int                                          # 1-based line number in the text
    raw: str                                        # the line as written (stripped)
    kind: Literal["table", "chain", "rule", "delete"]
    table: str                                      # the table it belongs to ("" before any *TABLE)
    chain: str = ""                                 # chain, rule, delete: the chain
    policy: str = ""                                # chain: ACCEPT/DROP/... or "-" for a user chain
    spec: str = ""                                  # rule: the text after `-A CHAIN `
    packets: int | None = None                      # chain policy or rule counters (-c), else None
    bytes: int | None = None


def lines(text: str | Iterable[str], table: str = "", strict: bool = False) -> Iterator[SaveLine]:
    """TEXT's table, chain, rule and chain-delete lines, in order. TABLE: the table lines
    before any `*TABLE` belong to (a table's lines without their header). STRICT: raise
    SaveSyntaxError for an unknown line or one outside a table; else skip it."""
    rows = text.splitlines() if isinstance(text, str) else text
    for n, raw in enumerate(rows, 1):
        line = raw.strip()
        if line == "COMMIT":
            table = ""  # a line after COMMIT and before the next *TABLE is in no table
            continue
        if not line or line.startswith("#"):
            continue
        packets = nbytes = None
        if m := _COUNTED.match(line):
            packets, nbytes, line = int(m.group(1)), int(m.group(2)), m.group(3)
        if line.startswith("*"):
            table = line[1:].strip()
            yield SaveLine(n, raw.strip(), "table", table)
            continue
        if not table:
            if strict:
                raise SaveSyntaxError(n, raw.strip(), "rule outside a table")
            continue
        if line.startswith(":"):
            m = _CHAIN.match(line)
            if m is None:
                if strict:
                    raise SaveSyntaxError(n, raw.strip(), "not a chain line")
                continue
            yield SaveLine(n, raw.strip(), "chain", table, chain=m.group(1), policy=m.group(2) or "-",
                           packets=int(m.group(3)) if m.group(3) else None,
                           bytes=int(m.group(4)) if m.group(4) else None)
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            yield SaveLine(n, raw.strip(), "rule", table, chain=chain, spec=spec.strip(),
                           packets=packets, bytes=nbytes)
        elif line.startswith("-X "):
            yield SaveLine(n, raw.strip(), "delete", table, chain=line[3:].strip())
        elif strict:
            raise SaveSyntaxError(n, raw.strip(), "not a table, chain or -A line")
