"""nsbox's side of the real-CNI comparison (tests/test_kernel_real_cni.py): the node and
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
        cni.ADD[conf.type](lab, node, pod, conf, ipam, f"id-{name}")
    lab.expect("pod1", "pod2", "icmp")
    lab.expect("node", "pod1", "icmp")


@recipe("realcni-bridge", params=[Param("hairpin", True, "hairpinMode (false: the comparison's negative control)")])
def bridge(lab, hairpin):
    """bridge + host-local (isGateway, ipMasq, hairpinMode), two pods: as real.sh bridge."""
    build(lab, "bridge", hairpin)


@recipe("realcni-ptp")
def ptp(lab):
    """ptp + host-local (ipMasq, mtu 1500), two pods: as real.sh ptp."""
    build(lab, "ptp")
