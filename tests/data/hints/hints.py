"""Recipes for tests/test_kernel_hints.py: a Calico-style node (pod /32, gateway 169.254.1.1
answered by proxy ARP on the node's cali veth) as issue 16 first met it -- the node with no
address and no route towards 169.254.1.1 -- and as it works (fixed=1: an uplink with an
address and a default route; fixed=2: the address without the route)."""

from nsbox.recipe import Param, recipe


@recipe("calico-node", params=[Param("fixed", 0, "1: the node has an address and a default route; 2: the address alone", min=0, max=2)])
def build(lab, fixed=0):
    """A Calico-style node: its pod routes via 169.254.1.1, which the node's veth answers by proxy ARP."""
    node = lab.host
    pod = lab.node("pod")
    lab.veth(pod, "eth0", node, "cali0123456789a")
    node.set_link("cali0123456789a", mac="ee:ee:ee:ee:ee:ee")
    node.sysctl("net.ipv4.conf.cali0123456789a.proxy_arp", 1)
    node.sysctl("net.ipv4.neigh.cali0123456789a.proxy_delay", 0)
    node.sysctl("net.ipv4.ip_forward", 1)
    node.route("10.65.0.5/32", dev="cali0123456789a", scope="link")
    pod.address("eth0", "10.65.0.5/32")
    pod.route("169.254.1.1", dev="eth0", scope="link")
    pod.route("default", via="169.254.1.1", dev="eth0")
    pod.serve("tcp", 7)
    if fixed:
        up = lab.node("router")
        lab.veth(node, "eth0", up, "eth0")
        node.address("eth0", "192.168.1.10/24")
        up.address("eth0", "192.168.1.1/24")
        if fixed == 1:
            node.route("default", via="192.168.1.1")
    lab.expect("host", "pod", "tcp", 7, name="tcp host->pod:7")
