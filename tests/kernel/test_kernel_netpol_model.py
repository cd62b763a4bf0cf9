"""kube-router's render installed through the lab model (Rendered.install: node.ipset and
node.iptables, issue 16) rather than loaded by hand: the lab is built by nsbox like any
other, its sets made before its rules, and the kernel's answers equal the e2e case's
table. Observers: `ipset list -n` inside the node's netns, and probes between the pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.netpol_lab import PROBE_TIMEOUT, kube_router_node, node_of

from nsbox.kits.netpol import PODS
from nsbox.kits.netpol.cases import Scenario, load_cases
from nsbox.kits.netpol.kuberouter import render
from tests.support import paths

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ipset", "iptables-restore", "conntrack")]

CASES = {c.id: c for c in load_cases(paths.DATA / "netpol" / "cases.json")}


def _scenario(case_id: str):
    s = Scenario(CASES[case_id])
    steps = list(s.steps())
    return s, steps[-1]


def _lab(lab, case_id):
    kube_router_node(lab)
    lab.require("ipset")
    scenario, _ = _scenario(case_id)
    render(scenario.cluster).install(lab.nodes["node"])


@pytest.mark.parametrize("case_id", ["default-deny-ingress", "allow-from-podselector-same-ns"])
def test_a_case_installed_through_the_model(case_id):
    from nsbox.pytest_plugin import build_lab, up

    scenario, step = _scenario(case_id)
    probe = next(p for p in step.probes if p.protocol == "TCP")
    def kube_router_case(lab):
        _lab(lab, case_id)

    h = up(build_lab(kube_router_case, {}), timeout=PROBE_TIMEOUT)
    try:
        sets = h.exec("node", ["ipset", "list", "-n"]).stdout.split()
        assert sorted(sets) == sorted(render(scenario.cluster).ipsets), sets
        wrong = [(s, d) for s in PODS for d in PODS if s != d
                 and h.probe(node_of(s), node_of(d), "tcp", probe.port) != probe.expected[(s, d)]]
    finally:
        problems = h.down()
    assert not problems, problems
    assert not wrong, f"{case_id}: kernel differs from the e2e table for {wrong}"
    # the case denies something and allows something: both answers were really tested
    assert set(probe.expected.values()) == {True, False}
