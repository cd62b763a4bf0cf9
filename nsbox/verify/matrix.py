"""Matrix verdicts from the reach checks of a lab's all-pairs matrices."""

from __future__ import annotations

from nsbox.model.matrix import Matrix
from nsbox.verify.results import CheckResult

REACHABLE, BLOCKED, MISSING = ".", "X", "?"


def tables(matrix: Matrix, results: list[CheckResult]) -> dict:
    """{"name", "proto", "port", "nodes", "expected", "observed", "comparison", "correct", "incorrect"}:
    rows are sources, columns destinations, as the NetworkPolicy e2e truth tables print them."""
    by_name = {r.name: r for r in results}
    allow = {(s, d): a for s, d, a in matrix.cells}
    expected, observed, comparison = [], [], []
    correct = incorrect = 0
    for src in matrix.nodes:
        e_row, o_row, c_row = [], [], []
        for dst in matrix.nodes:
            if (src, dst) not in allow:
                e_row.append(""), o_row.append(""), c_row.append("")
                continue
            e_row.append(REACHABLE if allow[(src, dst)] else BLOCKED)
            r = by_name.get(matrix.cell_name(src, dst))
            if r is None:
                o_row.append(MISSING), c_row.append(MISSING)
                continue
            o_row.append(REACHABLE if r.observed.startswith("allow") else BLOCKED)
            c_row.append(REACHABLE if r.passed else BLOCKED)
            correct += r.passed
            incorrect += not r.passed
        expected.append(e_row), observed.append(o_row), comparison.append(c_row)
    return {"name": matrix.name, "proto": matrix.proto, "port": matrix.port, "nodes": list(matrix.nodes),
            "expected": expected, "observed": observed, "comparison": comparison,
            "correct": correct, "incorrect": incorrect}
