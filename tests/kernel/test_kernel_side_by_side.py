"""`nsbox run` of several recipes in the sandbox runs them side by side (--jobs,
nsbox/side_by_side.py): each lab in a child with its own mount namespace and /run,
so two labs with the same node names do not meet, and the report keeps the
recipes' order whatever order they finish in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.support.paths import REPO, recipe_dir

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter")]

RECIPES = """
    from nsbox.recipe import recipe

    def pair(lab, subnet, port):
        lab.require("veth")
        a, b = lab.node("a"), lab.node("b")
        lab.veth(a, "eth0", b, "eth0")
        a.address("eth0", f"10.79.{subnet}.1/24")
        b.address("eth0", f"10.79.{subnet}.2/24")
        b.serve("tcp", port)

    @recipe("sbs-slow")
    def slow(lab):
        '''a deny that names no rule waits out its probe's timeout: the slow one.'''
        pair(lab, 0, 7)
        lab.nodes["b"].serve("udp", 9)
        lab.nodes["b"].iptables().append("INPUT", "-p udp --dport 9 -j DROP")
        lab.expect("a", "b", "tcp", 7)
        lab.expect("a", "b", "udp", 9, allow=False)

    @recipe("sbs-fast")
    def fast(lab):
        '''the same node names, another subnet; b refuses 7.'''
        pair(lab, 1, 8)
        lab.nodes["b"].serve("tcp", 7)
        lab.nodes["b"].iptables().append("INPUT", "-p tcp --dport 7 -j REJECT --reject-with tcp-reset")
        lab.expect("a", "b", "tcp", 8)
        lab.expect("a", "b", "tcp", 7, allow=False)

    @recipe("sbs-third")
    def third(lab):
        '''and a third, to queue behind the two.'''
        pair(lab, 2, 9)
        lab.expect("a", "b", "tcp", 9)
"""


@pytest.fixture
def recipes(tmp_path):
    return recipe_dir(tmp_path, "sbs.py", RECIPES)


def _run(recipes: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([sys.executable, "-m", "nsbox", "run", "--recipes", recipes, "sbs-slow", "sbs-fast",
                        "sbs-third", "--format", "json", *args], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(REPO))
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr)
    return json.loads(p.stdout)


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_labs_with_the_same_node_names_run_side_by_side(recipes, jobs):
    report = _run(recipes, "--jobs", jobs)
    results = report["results"]
    assert [r["recipe"] for r in results] == ["sbs-slow", "sbs-fast", "sbs-third"]  # the order given
    for r in results:
        assert r["status"] == "pass", r
        assert sorted(r["namespaces"].values()) == ["a", "b", "host"], r["namespaces"]  # each its own /run/netns
    fast = results[1]
    refused = next(c for c in fast["checks"] if c["proto"] == "tcp" and c["port"] == 7)
    assert refused["observed"].startswith("deny"), refused  # its own b, whose rule refuses 7


def test_one_at_a_time_gives_the_same_report(recipes):
    def summary(report: dict) -> list:
        return [(r["recipe"], r["status"], [(c["name"], c["passed"], c["observed"].split(",")[0])
                                            for c in r["checks"]]) for r in report["results"]]
    assert summary(_run(recipes, "--jobs", "1")) == summary(_run(recipes, "--jobs", "2"))
