"""Truth tables as the NetworkPolicy e2e suite prints them: expected, observed,
comparison side by side; `.` reachable (or as expected), `X` blocked (or wrong)."""

from __future__ import annotations


def render(m: dict) -> list[str]:
    nodes = m["nodes"]
    width = max(len(n) for n in nodes + ["-"])

    def table(rows: list[list[str]]) -> list[str]:
        head = "-".ljust(width) + " " + " ".join(n.ljust(width) for n in nodes)
        return [head] + [src.ljust(width) + " " + " ".join((c or "-").ljust(width) for c in row)
                         for src, row in zip(nodes, rows)]

    blocks = [table(m["expected"]), table(m["observed"]), table(m["comparison"])]
    col = len(blocks[0][0]) + 3
    lines = [f"{m['name']}: correct {m['correct']}, incorrect {m['incorrect']}, "
             f"result={'pass' if m['incorrect'] == 0 else 'FAIL'}",
             "expected:".ljust(col) + "observed:".ljust(col) + "comparison:"]
    for parts in zip(*blocks):
        lines.append("".join(p.ljust(col) for p in parts[:-1]) + parts[-1])
    return lines
