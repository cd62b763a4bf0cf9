"""All-pairs reachability: every ordered pair of a set of nodes, probed and judged.

A matrix is a set of ordinary reach checks (one per ordered pair, named
"MATRIX: SRC->DST"), plus the grouping that lets the report print them as the
NetworkPolicy e2e suite does: expected, observed and comparison tables with
`.` (reachable / as expected) and `X` (not reachable / wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Union

# allow every pair, or decide per (src, dst)
Expected = Union[bool, Callable[[str, str], bool], Mapping[tuple[str, str], bool]]


@dataclass(frozen=True)
class Matrix:
    name: str
    nodes: tuple[str, ...]
    proto: str
    port: int | None
    cells: tuple[tuple[str, str, bool], ...]  # (src, dst, allow) for every ordered pair probed

    def cell_name(self, src: str, dst: str) -> str:
        return f"{self.name}: {src}->{dst}"


def expected_of(expected: Expected, src: str, dst: str) -> bool:
    if isinstance(expected, bool):
        return expected
    if callable(expected):
        return bool(expected(src, dst))
    if (src, dst) not in expected:
        raise KeyError(f"expected= has no entry for {src}->{dst}")
    return bool(expected[(src, dst)])
