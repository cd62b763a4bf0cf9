"""A Mermaid flowchart reader that is not nsbox's: the grammar subset `nsbox show --format
mermaid` writes, taken from the Mermaid docs. Anything outside it is an error."""

from __future__ import annotations

import re

ID = r"[A-Za-z_][A-Za-z0-9_]*"
NODE = re.compile(rf'^({ID})(\[\["[^"]*"\]\]|\["[^"]*"\])$')
SUBGRAPH = re.compile(rf'^subgraph ({ID})\["[^"]*"\]$')
EDGE = re.compile(rf"^({ID}) (?:---|<-->|-->)(\|[^|\"]+\|)? ({ID})$")  # A --> B, A -->|label| B


def parse_mermaid(text: str) -> tuple[dict[str, list[str]], set[str], list[tuple[str, str]]]:
    """-> subgraph id -> member node ids, all node ids, edges. Raises on anything else."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "flowchart LR", lines[0]
    groups: dict[str, list[str]] = {}
    nodes: set[str] = set()
    edges: list[tuple[str, str]] = []
    current = None
    for line in lines[1:]:
        if m := SUBGRAPH.match(line):
            assert current is None, "nested subgraph"
            current = m.group(1)
            groups[current] = []
        elif line == "end":
            assert current is not None, "end without subgraph"
            current = None
        elif m := NODE.match(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes.add(m.group(1))
            if current:
                groups[current].append(m.group(1))
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(3)))
        else:
            raise AssertionError(f"not Mermaid flowchart syntax: {line!r}")
    assert current is None, "unclosed subgraph"
    return groups, nodes, edges
