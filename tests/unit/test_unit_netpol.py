"""The NetworkPolicy kit without a kernel: the simulator reproduces every truth table of the
e2e suite's 48 cases (65 probes, diagonal excluded as the e2e excludes it), the tables print
as the e2e prints them, bad policies are refused, and the kube-router renderer writes
kube-router's chain names, rule shapes and ipset restore sequence."""

from __future__ import annotations


import pytest

from nsbox.errors import ValidationError
from nsbox.kits.netpol import PODS, Scenario, allowed, load_cases, model_cluster, parse_policy, render_tables, tables
from nsbox.kits.netpol import kuberouter
from nsbox.kits.netpol.simulator import truth_table
from tests.support import paths

DATA = paths.DATA / "netpol"
CASES = load_cases(DATA / "cases.json")


def test_the_reference_has_48_cases_and_65_probes():
    assert len(CASES) == 48
    assert sum(len(s.probes) for c in CASES for s in c.steps) == 65


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_simulator_reproduces_the_e2e_truth_table(case):
    scenario = Scenario(case)
    for step in scenario.steps():
        for probe in step.probes:
            got = truth_table(scenario.cluster, list(PODS), probe.port, probe.protocol)
            t = tables(f"{case.id} step {step.index}", list(PODS), probe.expected, got)
            assert t["incorrect"] == 0, render_tables(t)
            assert t["correct"] == 72


def policy(spec: dict, name: str = "p") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def test_tables_print_as_the_e2e_prints_them():
    c = model_cluster([80], ["TCP"])
    c.apply(parse_policy(policy({"podSelector": {}, "policyTypes": ["Ingress"]}), "x"))
    expected = truth_table(c, list(PODS), 80, "TCP")
    observed = dict(expected)
    observed[("y/a", "x/a")] = True  # one wrong cell
    text = render_tables(tables("deny x", list(PODS), expected, observed))
    lines = text.splitlines()
    assert lines[0] == "deny x: correct 71, incorrect 1, result=FAIL"
    assert lines[1].split() == ["expected:", "observed:", "comparison:"]
    assert lines[2].split()[:10] == ["-", "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]
    y_a = lines[2 + 4].split()
    assert y_a[:10] == ["y/a", "X", "X", "X", "-", ".", ".", ".", ".", "."]        # expected
    assert y_a[10:20] == ["y/a", ".", "X", "X", "-", ".", ".", ".", ".", "."]      # observed
    assert y_a[20:] == ["y/a", "X", ".", ".", "-", ".", ".", ".", ".", "."]        # comparison


def test_named_port_endport_and_ipblock_semantics():
    c = model_cluster([80, 81], ["TCP", "UDP"])
    c.apply(parse_policy(policy({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]},
                    {"from": [{"ipBlock": {"cidr": "10.0.2.0/24", "except": ["10.0.2.2/32"]}}],
                     "ports": [{"port": 79, "endPort": 80}]}],
        "policyTypes": ["Ingress"]}), "x"))
    assert allowed(c, "z/c", "x/a", 81, "UDP") and not allowed(c, "z/c", "x/a", 80, "UDP")
    assert not allowed(c, "z/c", "x/a", 81, "TCP")  # the name resolves per protocol
    assert allowed(c, "y/a", "x/a", 80, "TCP") and not allowed(c, "y/a", "x/a", 81, "TCP")
    assert not allowed(c, "y/b", "x/a", 80, "TCP")  # except
    assert allowed(c, "y/b", "x/b", 80, "TCP")      # x/b not selected: not isolated


def test_policy_types_default_as_the_api_server_defaults_them():
    p = parse_policy(policy({"podSelector": {}, "egress": [{}]}), "x")
    assert p.policy_types == ("Ingress", "Egress")
    assert parse_policy(policy({"podSelector": {}}), "x").policy_types == ("Ingress",)


@pytest.mark.parametrize("spec, why", [
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "ipBlock cannot be combined"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]},
     "not inside"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "endPort"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]}, "protocol"),
    ({"podSelector": {}, "policyTypes": ["Both"]}, "policyTypes"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "needs values"),
    ({"podSelector": {}, "ingres": []}, "spec has"),
])
def test_bad_policies_are_refused(spec, why):
    with pytest.raises(ValidationError, match=why):
        parse_policy(policy(spec), "x")


def test_kube_router_names_and_rule_shapes():
    c = model_cluster([80], ["TCP"])
    c.apply(parse_policy(policy({"podSelector": {"matchLabels": {"pod": "a"}},
                                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                              "ports": [{"port": 80, "endPort": 82}]}],
                                 "policyTypes": ["Ingress"]}, "allow-b"), "x"))
    r = kuberouter.render(c, version="1700000000000000000")
    text = r.filter_restore()
    pol = kuberouter.policy_chain(c.policies[0], "1700000000000000000")
    assert pol.startswith("KUBE-NWPLCY-") and len(pol) == len("KUBE-NWPLCY-") + 16
    src = kuberouter.rule_pod_set(c.policies[0], "ingress", 0)
    dst = kuberouter.target_dst_set(c.policies[0])
    assert r.ipsets[src].entries == ["10.0.1.2"] and r.ipsets[dst].entries == ["10.0.1.1"]
    assert (f'-A {pol} -m comment --comment "x/allow-b ingress pods" -m set --match-set {src} src '
            f"-m set --match-set {dst} dst -p TCP --dport 80:82 -j MARK --set-xmark 0x10000/0x10000") in text
    fw = kuberouter.pod_chain(c.pods["x/a"], "1700000000000000000")
    assert f'-I {fw} 1 -d 10.0.1.1 -m comment --comment "x/allow-b policy" -j {pol}' in text
    assert f'-I {fw} 1 -s 10.0.1.1 -m comment --comment "default egress" -j KUBE-NWPLCY-DEFAULT' in text
    assert (f'-A KUBE-ROUTER-FORWARD -m physdev --physdev-is-bridged -m comment --comment "x/a in" '
            f"-d 10.0.1.1 -j {fw}") in text
    assert f'-A {fw} -m comment --comment "x/a reject" -m mark ! --mark 0x10000/0x10000 -j REJECT' in text
    # a pod no policy selects goes to the default chain both ways
    fw_b = kuberouter.pod_chain(c.pods["x/b"], "1700000000000000000")
    assert f'-I {fw_b} 1 -d 10.0.1.2 -m comment --comment "default ingress" -j KUBE-NWPLCY-DEFAULT' in text


def test_ipset_restore_swaps_through_one_tmp_set_per_option_string():
    c = model_cluster([80], ["TCP"])
    c.apply(parse_policy(policy({"podSelector": {"matchLabels": {"pod": "a"}},
                                 "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.2/32"]}}]}],
                                 "policyTypes": ["Egress"]}), "x"))
    lines = kuberouter.render(c).ipset_restore().splitlines()
    creates = [ln for ln in lines if ln.startswith("create TMP-")]
    assert sorted(ln.split(" ", 2)[2] for ln in creates) == ["hash:ip timeout 0", "hash:net timeout 0"]
    assert any(ln.endswith("10.0.1.2/32 timeout 0 nomatch") for ln in lines)
    assert lines[-2:] == sorted(lines[-2:]) and all(ln.startswith("destroy TMP-") for ln in lines[-2:])
    swaps = [ln for ln in lines if ln.startswith("swap ")]
    assert len(swaps) == 2  # the egress target set and the ipBlock set


def test_rendering_every_case_is_cheap():
    """The kernel test renders one sync per step; all 48 cases stay well under a second."""
    import time
    start = time.monotonic()
    for case in CASES:
        scenario = Scenario(case)
        for _ in scenario.steps():
            kuberouter.render(scenario.cluster)
    assert time.monotonic() - start < 2.0


def test_strict_splits_a_policy_of_both_types_and_gives_each_ipblock_its_own_set():
    c = model_cluster([80], ["TCP"])
    c.apply(parse_policy(policy({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.2.0/24"}}, {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.2/32"]}}]}],
        "egress": [{}], "policyTypes": ["Ingress", "Egress"]}, "both"), "x"))
    p = c.policies[0]
    plain, strict = kuberouter.render(c), kuberouter.render(c, strict=True)
    fw = kuberouter.pod_chain(c.pods["x/a"], "1")
    ing, eg = kuberouter.policy_chain(p, "1"), kuberouter.policy_chain(p, "1", "egress")
    assert f'-I {fw} 1 -m comment --comment "x/both policy" -j {ing}' in plain.rules
    assert eg not in plain.chains
    assert f'-I {fw} 1 -d 10.0.1.1 -m comment --comment "x/both policy" -j {ing}' in strict.rules
    assert f'-I {fw} 1 -s 10.0.1.1 -m comment --comment "x/both policy" -j {eg}' in strict.rules
    nets = lambda r: [s.entries for s in r.ipsets.values() if s.type == "hash:net"]  # noqa: E731
    assert nets(plain) == [["10.0.2.0/24", "10.0.0.0/16", "10.0.2.2/32 nomatch"]]
    assert sorted(nets(strict)) == [["10.0.0.0/16", "10.0.2.2/32 nomatch"], ["10.0.2.0/24"]]
