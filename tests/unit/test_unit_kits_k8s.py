"""The k8s kit (nsbox/kits/k8s.py): kube-proxy's nat rules for a ClusterIP Service equal
dataplane.md §4a's sample (computed independently there from kube-proxy's formulas; vendored
as tests/data/kube-proxy/iptables-mode.md),
chain names hash as kube-proxy's own test expects, and the model validates."""

from __future__ import annotations

import re

import pytest

from nsbox.errors import ValidationError
from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.validate import validate
from tests.support.paths import DATA

SAMPLE = DATA / "kube-proxy" / "iptables-mode.md"


def _sample_nat() -> list[str]:
    text = SAMPLE.read_text()
    block = text[text.index("**Sample `iptables-save -t nat`**"):]
    block = block[block.index("*nat") + 5:block.index("COMMIT")]
    return [ln for ln in block.splitlines() if ln]


def _cluster() -> tuple[Lab, k8s.Cluster]:
    lab = Lab("t")
    k = k8s.Cluster(lab)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    pods = [k.pod(n1, "p1"), k.pod(n1, "p2"), k.pod(n2, "p3")]
    for p in pods:
        p.serve("http", 8080)
    k.service("web", k8s.Port(80, 8080, name="http"), pods=pods, cluster_ip="10.96.100.10")
    lab.expect("p1", "10.96.100.10", "http", 80, answered_by={"p1", "p2", "p3"})
    return lab, k


def test_kube_proxy_hash_matches_kube_proxys_own_test() -> None:
    assert k8s.port_proto_hash("ns1/svc1:p80", "tcp") == "XPGD46QRK7WJZT7O"


def test_probability_is_printed_as_iptables_save_prints_it() -> None:
    assert k8s.probability(3) == "0.33333333349"
    assert k8s.probability(2) == "0.50000000000"


def test_service_rules_equal_the_dataplane_sample_but_nodeport() -> None:
    lab, _ = _cluster()
    validate(lab)
    # The sample has a NodePort (KUBE-EXT-*, a KUBE-NODEPORTS rule), which the kit does not
    # write; iptables-save quotes comments that are not [A-Za-z0-9_-]+.
    want = [re.sub(r"--comment (default/web:http)( |$)", r'--comment "\1"\2', ln.removesuffix(" [0:0]"))
            for ln in _sample_nat() if "KUBE-EXT-" not in ln]
    for node in ("node1", "node2"):
        assert lab.nodes[node].iptables("nat").save_lines() == want


def test_pods_get_addresses_routes_and_hairpin_ports() -> None:
    lab, k = _cluster()
    assert [a.cidr for a in lab.nodes["p3"].addresses] == ["10.244.2.2/24"]
    assert lab.nodes["p3"].routes[0].via == "10.244.2.1"
    n1 = lab.nodes["node1"]
    ports = [i for i in n1.interfaces.values() if i.master == "cni0"]
    assert len(ports) == 2 and all(i.hairpin for i in ports)
    assert [(r.dst, r.via) for r in n1.routes] == [("default", "192.168.70.1"), ("10.244.2.0/24", "192.168.70.12")]
    assert {m.name: m.nodes for m in lab.machines} == {"node1": ("node1", "p1", "p2"), "node2": ("node2", "p3")}


def test_bad_input_is_refused_in_one_line() -> None:
    lab, k = _cluster()
    with pytest.raises(ValidationError, match="outside the cluster CIDR"):
        k.node("node3", "10.0.0.0/24")
    with pytest.raises(ValidationError, match="no pod of the cluster"):
        k.service("x", 80, pods=["nope"])
    with pytest.raises(ValidationError, match="outside"):
        k.service("y", 80, pods=["p1"], cluster_ip="192.0.2.1")
