"""All-pairs matrices on the real kernel: a DROP rule in one node makes its column X,
and the matrix fails exactly in the cells that rule decides (a mutation test)."""

import json
import os
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces")]

RECIPE = """
    from nsbox.recipe import Param, recipe

    @recipe("mx-demo", params=[Param("drop", True, "n0 drops tcp/7"), Param("expect_drop", True, "")])
    def build(lab, drop, expect_drop):
        '''Five nodes on a bridge; n0 may drop tcp/7.'''
        lab.require("veth", "bridge")
        lab.host.bridge("br0")
        nodes = []
        for i in range(5):
            c = lab.node(f"n{i}")
            lab.veth(c, "eth0", lab.host, f"v{i}", b_master="br0")
            c.address("eth0", f"10.10.0.{i + 2}/24")
            c.serve("tcp", 7)
            nodes.append(c)
        if drop:
            nodes[0].iptables("filter").append("INPUT", "-p tcp -m tcp --dport 7 -j DROP")
        lab.expect_matrix(nodes, "tcp", 7, expected=lambda s, d: not (expect_drop and d == "n0"))
"""


@pytest.fixture
def recipes(tmp_path):
    (tmp_path / "mx.py").write_text(textwrap.dedent(RECIPE))
    return str(tmp_path)


def matrix(run):
    (m,) = run.result["matrices"]
    return m


def test_matrix_passes_when_the_lab_matches(nsbox, recipes):
    run = nsbox.run("run", "mx-demo", "--recipes", recipes, "--format", "json", "--timeout", "0.5")
    assert run.returncode == 0, run.describe()
    m = matrix(run)
    assert (m["correct"], m["incorrect"]) == (20, 0)
    assert [row[0] for row in m["observed"]] == ["", "X", "X", "X", "X"]


def test_removing_the_drop_rule_fails_exactly_its_column(nsbox, recipes):
    run = nsbox.run("run", "mx-demo", "--recipes", recipes, "--set", "drop=false", "--format", "json",
                    "--timeout", "0.5")
    assert run.returncode == 1, run.describe()
    m = matrix(run)
    assert m["incorrect"] == 4
    wrong = {(src, dst) for src, row in zip(m["nodes"], m["comparison"]) for dst, c in zip(m["nodes"], row)
             if c == "X"}
    assert wrong == {(f"n{i}", "n0") for i in range(1, 5)}


def test_text_report_prints_the_three_tables(nsbox, recipes):
    run = nsbox.run("run", "mx-demo", "--recipes", recipes, "--set", "expect_drop=false", "--timeout", "0.5")
    assert run.returncode == 1
    assert "tcp/7 matrix: correct 16, incorrect 4, result=FAIL" in run.stdout
    assert "expected:" in run.stdout and "comparison:" in run.stdout
