"""Services on the k8s kit (nsbox/kits/k8s/services.py) without the kernel: what each node's
kube-proxy installs is kubeproxy's render, Services are targets of lab.expect, the spread
check's model and verdict, bad input refused in one line."""

from __future__ import annotations

import pytest

from nsbox.errors import ValidationError
from nsbox.kits import k8s
from nsbox.kits.k8s import services as svcs
from nsbox.kits.kubeproxy import iptables as kp_ipt
from nsbox.kits.kubeproxy import nftables as kp_nft
from nsbox.model import Lab
from nsbox.model.rules import parse_rule
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.model.spread import SpreadCheck
from nsbox.validate import validate
from nsbox.verify.results import CheckResult
from nsbox.verify.spread import run_spread


def _cluster(mode: str = "iptables") -> tuple[Lab, k8s.Cluster]:
    lab = Lab("t")
    k = k8s.Cluster(lab, mode=mode)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    for name, node in (("w1", n1), ("w2", n1), ("w3", n2)):
        k.pod(node, name, labels={"app": "web"}).serve("http", 8080)
    k.pod(n2, "c")
    return lab, k


def test_the_nodes_rules_are_kube_proxys_render() -> None:
    lab, k = _cluster()
    web = k.service("web", [k8s.Port(80, 8080, name="http"), k8s.Port(53, 5353, "UDP", "dns")],
                    selector={"app": "web"}, type="NodePort")
    validate(lab)
    assert web.endpoints == {"w1", "w2", "w3"}
    kn = k.nodes["node2"]
    payload = kp_ipt.render(svcs.proxier_config(k, kn), [web.api], [svcs.endpoint_slice(k, web)]).payload
    want = [ln for ln in payload.splitlines() if ln.startswith("-A ")]
    nat = lab.nodes["node2"].iptables("nat")
    got = [f"-A {c} {r.render()}" for c, ch in nat.chains.items() for r in ch.rules if not ch.builtin]
    # every rule of the payload, as iptables-save prints it back, and nothing else
    assert sorted(got) == sorted(f"-A {ln.split()[1]} {parse_rule(svcs.as_saved(ln.split(' ', 2)[2])).render()}"
                                 for ln in want if ln.split()[1] in nat.chains
                                 and not nat.chains[ln.split()[1]].builtin)
    # the jump rules kube-proxy inserts at the top of the builtin chains
    assert nat.chains["PREROUTING"].rules[0].jumps_to == "KUBE-SERVICES"
    assert [r.jumps_to for r in nat.chains["POSTROUTING"].rules][0] == "KUBE-POSTROUTING"
    # node2's config: its own name and address, the cluster CIDR for detect-local
    assert "! -s 10.244.0.0/16" in payload and "--probability 0.3333333333" in payload


def test_a_resync_replaces_the_previous_rules() -> None:
    lab, k = _cluster()
    k.service("a", 80, pods=["w1"])
    k.service("b", 80, pods=["w2"])
    nat = lab.nodes["node1"].iptables("nat")
    services = [r for r in nat.chains["KUBE-SERVICES"].rules]
    assert len(services) == 3  # two ClusterIPs and the NodePorts rule, once each
    assert sum(1 for r in nat.chains["PREROUTING"].rules if r.jumps_to == "KUBE-SERVICES") == 1
    k.pod("node1", "w4", labels={"app": "web"})  # a pod later: one more sync, nothing doubled
    assert sum(1 for r in nat.chains["OUTPUT"].rules if r.jumps_to == "KUBE-SERVICES") == 1


def test_nftables_mode_installs_the_kube_proxy_table() -> None:
    lab, k = _cluster("nftables")
    web = k.service("web", 80, selector={"app": "web"})
    kn = k.nodes["node1"]
    text = kp_nft.render(svcs.proxier_config(k, kn), [web.api], [svcs.endpoint_slice(k, web)]).text()
    assert lab.nodes["node1"].firewall.nft == [text]
    assert "numgen random mod 3" in text
    assert not any(c.startswith("KUBE-") for t in lab.nodes["node1"].firewall.tables.values() for c in t.chains)
    assert "nftables" in lab.requires


def test_a_service_is_a_target_of_expect() -> None:
    lab, k = _cluster()
    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"}, cluster_ip="10.96.0.50")
    by_object = lab.expect("c", web, "http", 80, answered_by=web.endpoints)
    by_name = lab.expect("c", "web", "http", 80, name="by name")
    assert by_object.dst == by_name.dst == "10.96.0.50"
    validate(lab)


def test_nodeports_are_virtual_on_every_node_also_later_ones() -> None:
    lab, k = _cluster()
    web = k.service("web", 80, selector={"app": "web"}, type="NodePort")
    k.node("node3", "10.244.3.0/24")
    np = web.node_port(80)
    assert np == 30000
    assert {(v.ip, v.port) for v in lab.virtuals if v.port} == {(kn.ip, np) for kn in k.nodes.values()}


@pytest.mark.parametrize("kwargs,message", [
    ({"ports": 80}, "selector= or pods="),
    ({"ports": [k8s.Port(80), k8s.Port(81)], "pods": ["w1"]}, "needs a name"),
    ({"ports": 80, "pods": ["w1"], "type": "Ingress"}, "type is one of"),
    ({"ports": k8s.Port(80, node_port=40000), "pods": ["w1"], "type": "NodePort"}, "outside 30000-32767"),
    ({"ports": 80, "pods": ["nope"]}, "no pod of the cluster"),
    ({"ports": 0, "pods": ["w1"]}, "out of range"),
    ({"ports": 80, "pods": ["w1"], "external_traffic_policy": "Local"}, "need type NodePort"),
])
def test_bad_services_are_refused_in_one_line(kwargs, message) -> None:
    _, k = _cluster()
    ports = kwargs.pop("ports")
    with pytest.raises(ValidationError, match=message) as e:
        k.service("x", ports, **kwargs)
    assert "\n" not in str(e.value)


def test_an_option_after_p_goes_to_the_match_already_loaded() -> None:
    """kube-proxy writes `-m tcp -p tcp -d IP --dport 80`: one tcp match, in its place
    (the parser used to load a second, implicit one: `-m tcp -m tcp --dport 80`)."""
    rule = parse_rule('-m comment --comment "x y" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j KUBE-SVC-X')
    assert rule.render() == '-d 10.96.0.1/32 -p tcp -m comment --comment "x y" -m tcp --dport 80 -j KUBE-SVC-X'
    assert parse_rule("-p tcp --dport 80 -j X").render() == "-p tcp -m tcp --dport 80 -j X"


def test_expect_spread_adds_its_probes_and_survives_the_hand_over() -> None:
    lab, k = _cluster()
    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"})
    s = lab.expect_spread("c", web, 80, probes=5, at_least=3, max_share=0.6)
    assert s.probes == tuple(f"{s.name} #{i}" for i in range(1, 6))
    validate(lab)
    back = lab_from_dict(lab_to_dict(lab))
    assert [c for c in back.checks if isinstance(c, SpreadCheck)] == [s]
    for bad, msg in (({"probes": 1}, "probes is"), ({"at_least": 9}, "at_least"), ({"max_share": 0}, "max_share")):
        with pytest.raises(ValidationError, match=msg):
            lab.expect_spread("c", web, 80, name="bad", **{"probes": 5, **bad})


def _results(check: SpreadCheck, answers: list[str | None]) -> dict[str, CheckResult]:
    return {n: CheckResult(n, "reach", "allow", "allow", a is not None, answered_by=a)
            for n, a in zip(check.probes, answers)}


def test_the_spread_verdict() -> None:
    c = SpreadCheck("s", tuple(f"s #{i}" for i in range(6)), at_least=3, max_share=0.5)
    assert run_spread(c, _results(c, ["a", "b", "c", "a", "b", "c"])).passed
    # always the first endpoint (kube-proxy's random choice gone): fails
    one = run_spread(c, _results(c, ["a"] * 6))
    assert not one.passed and one.observed.startswith("1 endpoints, top a 100%")
    assert not run_spread(c, _results(c, ["a", "a", "a", "a", "b", "c"])).passed  # a: 67% > 50%
    assert not run_spread(c, _results(c, ["a", "b", "c", "a", "b", None])).passed  # a probe failed


def test_a_destination_of_another_kind_is_refused_not_a_traceback() -> None:
    lab, _ = _cluster()
    with pytest.raises(ValidationError, match="a destination is a node"):
        lab.expect("c", 42, "tcp", 80)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_every_service_option_renders_and_validates(mode: str) -> None:
    lab, k = _cluster(mode)
    k.service("sticky", 80, selector={"app": "web"}, session_affinity="ClientIP", session_affinity_timeout=60)
    k.service("itp", 80, selector={"app": "web"}, internal_traffic_policy="Local")
    k.service("lb", [k8s.Port(80, 8080, name="http"), k8s.Port(53, proto="UDP", name="dns")],
              selector={"app": "web"}, type="LoadBalancer", load_balancer_ip="192.168.70.240",
              load_balancer_source_ranges=["192.168.70.200/32"], external_ips=["192.168.70.250"],
              external_traffic_policy="Local")
    validate(lab)
    if mode == "iptables":
        nat = lab.nodes["node1"].iptables("nat")
        rendered = "\n".join(nat.save_lines())
        assert "-m recent" in rendered and "KUBE-FW-" in rendered and "KUBE-SVL-" in rendered
    else:
        text = lab.nodes["node1"].firewall.nft[0]
        assert "affinity" in text and "firewall-ips" in text and "192.168.70.250" in text
