"""NetworkPolicy on the real kernel, as kube-router enforces it: one node (kube-bridge,
br_netfilter on) holding the e2e's nine pods x/y/z × a/b/c, each serving tcp and udp on 80
and 81. For every reference case, step by step, the kube-router renderer's ipsets and filter
table are loaded into the node (ipset restore, iptables-restore), conntrack is flushed, and
all 72 ordered pod pairs are probed with real connections to the pod IPs. The observed table
must equal the case's expected e2e table AND the simulator's table (written independently,
from the API semantics). Mutations: without a pod's REJECT rule, or without the ipset's
`nomatch` entry of an ipBlock except, a denied pair connects. Last, kube-router's four
departures from the API (found by the property test) observed on the kernel, and mended by
render(strict=True).

The lab is built once for the module (about 2 s) and the rules are swapped between cases.
SCTP probes are skipped where the kernel has no SCTP sockets (the pods could not serve it).
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.netpol_lab import SCTP_SKIP, run_in_node, lab_up, node_of, observe, sync
from nsbox.kits.netpol import (PODS, ContainerPort, Scenario, allowed, load_cases, model_cluster, parse_policy,
                               render_tables, tables, truth_table)
from nsbox.kits.netpol.cases import pod_ip
from nsbox.kits.netpol.kuberouter import Rendered, pod_chain, render
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ipset", "iptables-restore", "iptables-save", "conntrack")]

CASES = load_cases(DATA / "netpol" / "cases.json")
BY_ID = {c.id: c for c in CASES}


@pytest.fixture(scope="module")
def node():
    yield from lab_up()


def check_case(h, case_id: str) -> list[str]:
    """Replay CASE_ID; returns the printed tables and the failures."""
    scenario = Scenario(BY_ID[case_id])
    out, failures, skipped = [], [], []
    for step in scenario.steps():
        sync(h, render(scenario.cluster, version=str(step.index)))
        for probe in step.probes:
            label = f"{case_id} step {step.index} {probe.port}/{probe.protocol}"
            if probe.protocol == "SCTP":
                skipped.append(f"{label}: {SCTP_SKIP}")
                continue
            observed = observe(h, probe.port, probe.protocol)
            simulated = truth_table(scenario.cluster, list(PODS), probe.port, probe.protocol)
            vs_expected = tables(f"{label} (e2e expected vs kernel)", list(PODS), probe.expected, observed)
            vs_sim = tables(f"{label} (simulator vs kernel)", list(PODS), simulated, observed)
            out += [render_tables(vs_expected), render_tables(vs_sim)]
            if vs_expected["incorrect"] or vs_sim["incorrect"]:
                failures.append(label)
    print("\n".join(out + skipped))
    if skipped and not out:
        pytest.skip("; ".join(skipped))
    return failures


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_case_on_the_kernel(node, case_id):
    failures = check_case(node, case_id)
    assert not failures, f"kernel table differs in: {', '.join(failures)} (tables above)"


def _rendered(case_id: str) -> tuple[Scenario, Rendered]:
    scenario = Scenario(BY_ID[case_id])
    for _ in scenario.steps():
        pass
    return scenario, render(scenario.cluster)


def test_layout_is_kube_routers_and_the_reject_counts(node):
    """iptables-save and ipset list (not the renderer) show the chains and sets; a denied
    probe raises the packet counter of the target pod's REJECT rule."""
    scenario, r = _rendered("allow-from-podselector-same-ns")
    sync(node, r)
    saved = run_in_node(node, ["iptables-save", "-t", "filter"])
    assert saved.count(":KUBE-POD-FW-") == 9 and ":KUBE-NWPLCY-DEFAULT" in saved
    assert "-A FORWARD -m comment --comment \"kube-router netpol - " in saved
    assert "-m physdev --physdev-is-bridged" in saved
    # every chain holds exactly the rules the sync wrote (-I lines included)
    wrote = Counter(ln.split()[1] for ln in r.rules)
    held = Counter(ln.split()[1] for ln in saved.splitlines() if ln.startswith("-A "))
    assert held == wrote
    sets = run_in_node(node, ["ipset", "list", "-n"]).split()
    assert sorted(s for s in sets if s.startswith("KUBE-")) == sorted(r.ipsets)
    assert not [s for s in sets if s.startswith("TMP-")]  # the swap sets are destroyed
    assert any(s.startswith("KUBE-SRC-") for s in sets) and any(s.startswith("KUBE-DST-") for s in sets)
    assert not node.probe("x-c", "x-a", "tcp", 80)
    assert node.probe("x-b", "x-a", "tcp", 80)
    fw = pod_chain(scenario.cluster.pods["x/a"], "1")
    counted = [ln for ln in run_in_node(node, ["iptables-save", "-c", "-t", "filter"]).splitlines()
               if f"-A {fw} " in ln and "-j REJECT" in ln]
    assert counted and not counted[0].startswith("[0:"), counted


def test_mutation_without_the_reject_rule_a_deny_connects(node):
    _, r = _rendered("default-deny-ingress")
    sync(node, r)
    assert not node.probe("y-b", "x-a", "tcp", 80)
    r.rules = [ln for ln in r.rules if '"x/a reject"' not in ln]
    sync(node, r)
    assert node.probe("y-b", "x-a", "tcp", 80)
    assert not node.probe("y-b", "x-b", "tcp", 80)  # x/b keeps its REJECT


def test_mutation_without_the_except_nomatch_entry_a_deny_connects(node):
    _, r = _rendered("egress-cidr-except")
    sync(node, r)
    assert not node.probe("x-a", "x-b", "tcp", 80)
    assert node.probe("x-a", "x-c", "tcp", 80)
    hit = 0
    for s in r.ipsets.values():
        kept = [e for e in s.entries if e != f"{pod_ip('x/b')}/32 nomatch"]
        hit += len(s.entries) - len(kept)
        s.entries = kept
    assert hit == 1
    sync(node, r)
    assert node.probe("x-a", "x-b", "tcp", 80)


# --------------------------------------------------------- kube-router's departures from the API

def _policy(ns: str, name: str, spec: dict):
    return parse_policy({"metadata": {"name": name}, "spec": spec}, ns)


def test_kube_router_both_types_admits_traffic_between_its_own_pods(node):
    """A policy of both types is one chain that every packet of its pods passes: x/b's
    egress rule (allow all) marks x/b -> x/a at x/a's ingress too, though `ingress: []`
    isolates x/a. The simulator denies; kube-router's rules connect; strict denies."""
    c = model_cluster([80], ["TCP"])
    c.apply(_policy("x", "deny-in-allow-out", {"podSelector": {}, "ingress": [], "egress": [{}],
                                               "policyTypes": ["Ingress", "Egress"]}))
    assert not allowed(c, "x/b", "x/a", 80, "TCP")
    sync(node, render(c))
    assert node.probe("x-b", "x-a", "tcp", 80)       # kube-router's departure, observed
    assert not node.probe("y-b", "x-a", "tcp", 80)   # from outside the policy: isolated
    sync(node, render(c, strict=True))
    assert not node.probe("x-b", "x-a", "tcp", 80)
    assert node.probe("x-b", "y-a", "tcp", 80)


def test_kube_router_egress_named_port_without_to_resolves_on_its_own_namespace(node):
    """`egress: [{ports: [{port: http}]}]`: the API resolves `http` on each destination pod;
    kube-router resolves it on the policy's namespace's pods (81 here) and opens that number
    to every destination. y/a names 80 `http`."""
    c = model_cluster([80, 81], ["TCP"])
    for pod in c.pods.values():
        number = 80 if pod.key == "y/a" else 81
        pod.ports = pod.ports + (ContainerPort("http", number, "TCP"),)
    c.apply(_policy("x", "egress-http", {"podSelector": {"matchLabels": {"pod": "a"}},
                                         "egress": [{"ports": [{"port": "http"}]}], "policyTypes": ["Egress"]}))
    assert allowed(c, "x/a", "y/a", 80, "TCP") and not allowed(c, "x/a", "y/a", 81, "TCP")
    sync(node, render(c))
    assert (node.probe("x-a", "y-a", "tcp", 80), node.probe("x-a", "y-a", "tcp", 81)) == (False, True)
    sync(node, render(c, strict=True))
    assert (node.probe("x-a", "y-a", "tcp", 80), node.probe("x-a", "y-a", "tcp", 81)) == (True, False)
    assert node.probe("x-a", "y-b", "tcp", 81)  # y/b's http is 81


def test_kube_router_drops_a_named_port_towards_an_ipblock(node):
    c = model_cluster([80], ["TCP"])
    c.apply(_policy("x", "egress-block-np", {"podSelector": {"matchLabels": {"pod": "a"}},
                                             "egress": [{"to": [{"ipBlock": {"cidr": "10.0.2.0/24"}}],
                                                         "ports": [{"port": "serve-80-tcp"}]}],
                                             "policyTypes": ["Egress"]}))
    assert allowed(c, "x/a", "y/b", 80, "TCP") and not allowed(c, "x/a", "z/b", 80, "TCP")
    sync(node, render(c))
    assert not node.probe("x-a", "y-b", "tcp", 80)
    sync(node, render(c, strict=True))
    assert node.probe("x-a", "y-b", "tcp", 80) and not node.probe("x-a", "z-b", "tcp", 80)


def test_kube_router_one_ipblocks_except_cuts_into_another_ipblock(node):
    """from: [ipBlock 10.0.2.0/24, ipBlock 10.0.0.0/16 except 10.0.2.2/32]: the peers are OR'ed,
    so y/b (10.0.2.2) is allowed by the first. kube-router puts both in one hash:net set where
    the /32 nomatch entry wins for 10.0.2.2 (found by the property test)."""
    c = model_cluster([80], ["TCP"])
    c.apply(_policy("x", "two-blocks", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.2.0/24"}},
        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.2/32"]}}]}], "policyTypes": ["Ingress"]}))
    assert allowed(c, "y/b", "x/a", 80, "TCP")
    sync(node, render(c))
    assert not node.probe("y-b", "x-a", "tcp", 80) and node.probe("y-a", "x-a", "tcp", 80)
    sync(node, render(c, strict=True))
    assert node.probe("y-b", "x-a", "tcp", 80)
