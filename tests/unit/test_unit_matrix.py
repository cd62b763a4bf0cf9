"""expect_matrix: the model expands every ordered pair into a reach check; the tables
and their rendering follow the NetworkPolicy e2e truth tables."""

import pytest

from nsbox.errors import ValidationError
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.report.matrix import render
from nsbox.validate import validate
from nsbox.verify.matrix import tables
from nsbox.verify.results import CheckResult


def lab_with(n: int, expected=True) -> tuple[Lab, object]:
    lab = Lab("m")
    lab.host.bridge("br0")
    nodes = []
    for i in range(n):
        c = lab.node(f"n{i}")
        lab.veth(c, "eth0", lab.host, f"v{i}", b_master="br0")
        c.address("eth0", f"10.10.0.{i + 2}/24")
        c.serve("tcp", 7)
        nodes.append(c)
    return lab, lab.expect_matrix(nodes, "tcp", 7, expected=expected)


def test_every_ordered_pair_becomes_a_check():
    lab, m = lab_with(4, expected=lambda s, d: d != "n0")
    validate(lab)
    assert len(lab.checks) == 12
    denied = sorted(c.name for c in lab.checks if not c.allow)
    assert denied == ["tcp/7 matrix: n1->n0", "tcp/7 matrix: n2->n0", "tcp/7 matrix: n3->n0"]


def test_expected_map_must_cover_every_pair():
    with pytest.raises(KeyError):
        lab_with(3, expected={("n0", "n1"): True})


def test_the_matrix_survives_the_jail_handover():
    lab, _ = lab_with(3)
    again = lab_from_dict(lab_to_dict(lab))
    validate(again)
    assert again.matrices == lab.matrices


def test_a_matrix_without_its_checks_is_refused():
    lab, _ = lab_with(3)
    lab.checks.pop()
    with pytest.raises(ValidationError, match="has no matching check"):
        validate(lab)


def test_tables_and_rendering():
    lab, m = lab_with(3, expected=lambda s, d: d != "n0")
    results = []
    for c in lab.checks:
        wrong = c.name == "tcp/7 matrix: n2->n0"  # observed allowed where a deny was expected
        observed = "allow" if (c.allow or wrong) else "deny"
        results.append(CheckResult(c.name, "reach", c.expected, observed, not wrong))
    t = tables(m, results)
    assert t["expected"] == [["", ".", "."], ["X", "", "."], ["X", ".", ""]]
    assert t["observed"] == [["", ".", "."], ["X", "", "."], [".", ".", ""]]
    assert t["comparison"] == [["", ".", "."], [".", "", "."], ["X", ".", ""]]
    assert (t["correct"], t["incorrect"]) == (5, 1)
    lines = render(t)
    assert lines[0] == "tcp/7 matrix: correct 5, incorrect 1, result=FAIL"
    assert lines[1].split() == ["expected:", "observed:", "comparison:"]
    assert lines[5].split() == ["n2", "X", ".", "-", "n2", ".", ".", "-", "n2", "X", ".", "-"]
