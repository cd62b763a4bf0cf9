"""The k8s kit's CNI layouts as a model (nsbox/kits/k8s/cni.py, cluster.py): names and
hashes as the plugins compute them (values seen in the real plugins 1.1.1, cni.md §1),
host-local's order, the layouts' pieces, and bad input refused in one line."""

from __future__ import annotations

import pytest

from nsbox.errors import ValidationError
from nsbox.kits import k8s
from nsbox.kits.k8s import cni
from nsbox.model import Lab
from nsbox.recipe import get
from nsbox.validate import validate


def test_chain_names_and_comment_as_the_real_plugin() -> None:
    # Seen in the real bridge/ptp/portmap 1.1.1 (a run of the real plugins on these machines; tests/kernel/test_kernel_real_cni.py repeats it).
    assert cni.chain_name("testnet", "id-pod1") == "CNI-65c0df18e8027263d4e01071"
    assert cni.chain_name("testnet", "id-pod2") == "CNI-56e70e4e9e5e4b18b4824ddb"
    assert cni.chain_name("ptpnet", "id-pod3") == "CNI-92d369f509aea228d30bf7f6"
    assert cni.chain_name("testnet", "id-pod1", "DN-") == "CNI-DN-65c0df18e8027263d4e01"
    assert cni.comment("testnet", "id-pod1") == r'"name: \"testnet\" id: \"id-pod1\""'
    assert len(cni.container_id("node1", "p1")) == 64
    assert cni.veth_name("x").startswith("veth") and len(cni.veth_name("x")) == 12


def test_host_local_hands_out_2_3_and_never_the_gateway() -> None:
    ipam = cni.HostLocal("10.88.0.0/16")
    assert ipam.gateway == "10.88.0.1"
    assert [ipam.allocate(f"c{i}") for i in range(3)] == ["10.88.0.2", "10.88.0.3", "10.88.0.4"]
    small = cni.HostLocal("10.9.0.0/30")
    assert small.allocate("a") == "10.9.0.2"
    with pytest.raises(ValidationError, match="no IP addresses available"):
        small.allocate("b")
    with pytest.raises(ValidationError, match="too small"):
        cni.HostLocal("10.9.0.0/31")


def test_bridge_ipmasq_rules_are_the_plugins() -> None:
    lab = Lab("t")
    node = lab.node("node")
    conf = cni.NetConf("testnet", "bridge", "10.88.0.0/16", ip_masq=True)
    ipam = cni.HostLocal(conf.subnet)
    for p in ("pod1", "pod2"):
        cni.bridge_add(lab, node, lab.node(p), conf, ipam, f"id-{p}")
    validate(lab)
    nat = node.iptables("nat").save_lines()
    c = r'-m comment --comment "name: \"testnet\" id: \"id-pod1\""'
    assert f"-A POSTROUTING -s 10.88.0.2/32 {c} -j CNI-65c0df18e8027263d4e01071" in nat
    assert f"-A CNI-65c0df18e8027263d4e01071 -d 10.88.0.0/16 {c} -j ACCEPT" in nat
    assert f"-A CNI-65c0df18e8027263d4e01071 ! -d 224.0.0.0/4 {c} -j MASQUERADE" in nat
    assert [a.cidr for a in node.addresses_of("cni0")] == ["10.88.0.1/16"]
    ports = [i for i in node.interfaces.values() if i.master == "cni0"]
    assert len(ports) == 2 and all(i.hairpin and i.txqueuelen == 0 for i in ports)


def test_ptp_layout_pieces() -> None:
    lab = Lab("t")
    node, pod = lab.node("node"), lab.node("pod")
    conf = cni.NetConf("kindnet", "ptp", "10.244.1.0/24", mtu=1500)
    att = cni.ptp_add(lab, node, pod, conf, cni.HostLocal(conf.subnet), "id-pod")
    validate(lab)
    assert [a.cidr for a in node.addresses_of(att.host_veth)] == ["10.244.1.1/32"]
    texts = [(r.delete, r.dst, r.via, r.dev, r.scope, r.src) for r in pod.routes]
    assert texts == [(False, "default", "10.244.1.1", "eth0", None, None),
                     (True, "10.244.1.0/24", None, "eth0", None, None),
                     (False, "10.244.1.1", None, "eth0", "link", "10.244.1.2"),
                     (False, "10.244.1.0/24", "10.244.1.1", "eth0", None, "10.244.1.2")]
    assert [(r.dst, r.dev, r.scope) for r in node.routes] == [("10.244.1.2/32", att.host_veth, "host")]


@pytest.mark.parametrize("kwargs,words", [
    ({"cni": "cilium"}, "cni must be one of bridge, ptp, vxlan, calico"),
    ({"cni": "calico", "masq": "kind"}, "with cni=calico masq is one of calico, none"),
    ({"cni": "vxlan", "masq": "cni"}, "with cni=vxlan masq is one of flannel, none"),
    ({"cni": "ptp", "masq": "cni"}, "with cni=ptp masq is one of kind, none"),
    ({"cni": "bridge", "masq": "kind"}, "with cni=bridge masq is one of none, flannel, cni"),
])
def test_cluster_refuses_bad_layouts(kwargs: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        k8s.Cluster(Lab("t"), **kwargs)


@pytest.mark.parametrize("sets", [{}, {"cni": "ptp"}, {"masq": "cni"}, {"cni": "ptp", "nodes": "3", "pods": "3"},
                                  {"cni": "vxlan", "nodes": "3"}, {"cni": "calico", "nodes": "3"}])
def test_pod_to_pod_validates(sets: dict) -> None:
    lab = get("pod-to-pod").build(sets)
    validate(lab)
    names = [c.name for c in lab.checks]
    assert "http n1-p1->outside (masqueraded to node1)" in names
    assert any("across nodes" in n for n in names)


def test_pod_to_pod_masq_cni_expects_the_nat_it_does() -> None:
    lab = get("pod-to-pod").build({"masq": "cni"})
    across = [c for c in lab.checks if "across nodes" in c.name]
    assert across and all(c.seen_from.startswith("192.168.70.") for c in across)
    same = [c for c in lab.checks if "same node" in c.name]
    assert same and all(c.seen_from.startswith("10.244.") for c in same)


def test_portmap_rules_as_the_real_plugin_wrote_them() -> None:
    # The real run's iptables-save (cni-1.1.1-run.log: testnet, pod1, hostPort 8080 -> 80).
    lab = Lab("t")
    node = lab.node("node")
    conf = cni.NetConf("testnet", "bridge", "10.88.0.0/16", ip_masq=True)
    ipam = cni.HostLocal(conf.subnet)
    att = cni.bridge_add(lab, node, lab.node("pod1"), conf, ipam, "id-pod1")
    cni.portmap_add(node, conf, att, [cni.PortMapping(8080, 80)], "cni0")
    cni.bridge_add(lab, node, lab.node("pod2"), conf, ipam, "id-pod2")
    validate(lab)
    nat = node.iptables("nat").save_lines()
    post = [ln for ln in nat if ln.startswith("-A POSTROUTING")]
    assert post[0] == '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ'
    assert [ln.split(" -j ")[-1] for ln in post[1:]] == ["CNI-65c0df18e8027263d4e01071",
                                                        "CNI-56e70e4e9e5e4b18b4824ddb"]
    dn = "CNI-DN-65c0df18e8027263d4e01"
    assert [ln for ln in nat if ln.startswith(f"-A {dn}")] == [
        f"-A {dn} -s 10.88.0.0/16 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        f"-A {dn} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        f"-A {dn} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80"]
    assert (r'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"testnet\" id: \"id-pod1\"" '
            f"-m multiport --dports 8080 -j {dn}") in nat
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE" in nat
    assert str(node.sysctls["net.ipv4.conf.cni0.route_localnet"]) == "1"


def test_portmap_refuses_a_bad_mapping() -> None:
    lab = Lab("t")
    node = lab.node("node")
    conf = cni.NetConf("n", "bridge", "10.88.0.0/16")
    att = cni.bridge_add(lab, node, lab.node("p"), conf, cni.HostLocal(conf.subnet), "id")
    with pytest.raises(ValidationError, match="bad port mapping"):
        cni.portmap_add(node, conf, att, [cni.PortMapping(0, 80)], "cni0")


def test_vxlan_nodes_are_flannels() -> None:
    lab = get("pod-to-pod").build({"cni": "vxlan", "nodes": "3"})
    validate(lab)
    n1 = lab.nodes["node1"]
    link = next(x for x in lab.links if x.node == "node1" and x.name == "flannel.1")
    o = link.spec()
    assert (o.vni, o.port, o.learning, o.local, o.dev) == (1, 8472, False, "192.168.70.11", "eth0")
    assert n1.interfaces["flannel.1"].mtu == 1450 and n1.interfaces["cni0"].mtu == 1450
    assert [a.cidr for a in n1.addresses_of("flannel.1")] == ["10.244.1.0/32"]
    # One neighbour, FDB entry and onlink route per other node; no route via a node address.
    assert sorted((x.ip, x.state) for x in n1.neighs) == [("10.244.2.0", "permanent"), ("10.244.3.0", "permanent")]
    assert sorted((f.dst, f.master, f.state) for f in n1.fdbs) == [("192.168.70.12", False, "permanent"),
                                                                  ("192.168.70.13", False, "permanent")]
    assert {(r.dst, r.via, r.dev, r.onlink) for r in n1.routes if r.dst.startswith("10.244.")} == {
        ("10.244.2.0/24", "10.244.2.0", "flannel.1", True), ("10.244.3.0/24", "10.244.3.0", "flannel.1", True)}
    macs = {f.mac for f in n1.fdbs}
    assert macs == {x.lladdr for x in n1.neighs} and len(macs) == 2


def test_calico_pieces() -> None:
    assert cni.calico_veth_name("default", "n1-p1") == "cali4592fd35277"
    lab = get("pod-to-pod").build({"cni": "calico"})
    validate(lab)
    n1, pod = lab.nodes["node1"], lab.nodes["n1-p1"]
    veth = cni.calico_veth_name("default", "n1-p1")
    assert n1.interfaces[veth].mac == "ee:ee:ee:ee:ee:ee" and not n1.addresses_of(veth)
    assert str(n1.sysctls[f"net.ipv4.conf.{veth}.proxy_arp"]) == "1"
    assert [(r.dst, r.via, r.dev, r.scope) for r in pod.routes] == [
        ("169.254.1.1", None, "eth0", "link"), ("default", "169.254.1.1", "eth0", None)]
    assert [a.cidr for a in pod.addresses] == ["10.244.1.2/32"]
    assert ("10.244.1.0/24", "blackhole", "bird") in {(r.dst, r.type, r.proto) for r in n1.routes}
