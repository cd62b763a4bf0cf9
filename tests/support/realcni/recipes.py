"""nsbox's side of the real-CNI comparison (tests/kernel/test_kernel_real_cni.py): the node and
pods real.sh builds with the real plugins, built with nsbox/kits/k8s/cni.py from the same
network config (names, subnets, flags, container ids)."""

import dataclasses

from nsbox.kits.k8s import cni
from nsbox.recipe import Param, recipe

CONFS = {
    "bridge": cni.NetConf("testnet", "bridge", "10.88.0.0/16", is_gateway=True, ip_masq=True, hairpin_mode=True),
    "ptp": cni.NetConf("ptpnet", "ptp", "10.89.0.0/24", ip_masq=True, mtu=1500),
}
PODS = ("pod1", "pod2")


def build(lab, scenario: str, hairpin: bool = True) -> None:
    node, upstream = lab.node("node"), lab.node("upstream")
    lab.veth(node, "eth0", upstream, "upstream0")
    node.address("eth0", "192.168.70.2/24")
    node.route("default", via="192.168.70.1")
    conf = dataclasses.replace(CONFS[scenario], hairpin_mode=hairpin)
    ipam = cni.HostLocal(conf.subnet)
    for name in PODS:
        pod = lab.node(name)
        att = cni.ADD[conf.type](lab, node, pod, conf, ipam, f"id-{name}")
        if name == "pod1":  # portmap chained: hostPort 8080 -> 80/tcp
            cni.portmap_add(node, conf, att, [cni.PortMapping(8080, 80)],
                            conf.bridge if conf.type == "bridge" else att.host_veth)
    lab.nodes["pod1"].serve("http", 80)
    lab.virtual("192.168.70.2", proto="tcp", port=8080, name="hostPort 8080")
    lab.virtual("127.0.0.1", proto="tcp", port=8080, node="node", name="hostPort 8080 on the node's loopback")
    lab.expect("pod1", "pod2", "icmp")
    lab.expect("node", "pod1", "icmp")
    # portmap's hostPort, from another pod, from the node, on 127.0.0.1 (route_localnet +
    # the SETMARK/MASQ pair) and from pod1 itself (hairpin): as real.sh curls them.
    for src, dst in (("pod2", "192.168.70.2"), ("node", "192.168.70.2"), ("node", "127.0.0.1"),
                     ("pod1", "192.168.70.2")):
        lab.expect(src, dst, "http", 8080, answered_by={"pod1"}, name=f"http {src}->{dst}:8080 (hostPort)")


@recipe("realcni-bridge", params=[Param("hairpin", True, "hairpinMode (false: the comparison's negative control)")])
def bridge(lab, hairpin):
    """bridge + host-local (isGateway, ipMasq, hairpinMode), two pods: as real.sh bridge."""
    build(lab, "bridge", hairpin)


@recipe("realcni-ptp")
def ptp(lab):
    """ptp + host-local (ipMasq, mtu 1500), two pods: as real.sh ptp."""
    build(lab, "ptp")
