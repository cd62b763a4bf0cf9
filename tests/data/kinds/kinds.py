"""Recipes for tests/kernel/test_kernel_link_kinds.py: one per link kind (macvlan, vxlan, dummy)."""

from nsbox.recipe import recipe


@recipe("macvlan-lan")
def macvlan_lan(lab):
    """Two macvlan (bridge mode) children on the host's uplink into a LAN bridge."""
    host = lab.host
    lan = lab.node("lan")
    lan.bridge("br0", "10.9.0.1/24")
    lab.veth(host, "eth0", lan, "p0", b_master="br0")
    host.address("eth0", "10.9.0.2/24")
    for i in (1, 2):
        c = lab.node(f"c{i}")
        lab.macvlan(c, "eth0", parent=(host, "eth0"), mode="bridge")
        c.address("eth0", f"10.9.0.1{i}/24")
        c.serve("tcp", 7)
    lan.serve("tcp", 7)
    host.serve("tcp", 7)
    lab.expect("c1", "c2", "icmp")
    lab.expect("c2", "c1", "tcp", 7)
    lab.expect("lan", "c1", "icmp")
    lab.expect("c1", "lan", "tcp", 7)
    lab.expect("host", "c1", "icmp", allow=False)


@recipe("vxlan-pair")
def vxlan_pair(lab):
    """Two nodes joined by a VXLAN overlay (vni 42, port 4789) over a veth underlay."""
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "192.168.50.1/24")
    b.address("eth0", "192.168.50.2/24")
    lab.vxlan(a, "vx0", 42, local="192.168.50.1", remote="192.168.50.2", dev="eth0", learning=False)
    lab.vxlan(b, "vx0", 42, local="192.168.50.2", remote="192.168.50.1", dev="eth0", learning=False)
    a.address("vx0", "10.42.0.1/24")
    b.address("vx0", "10.42.0.2/24")
    b.serve("tcp", 7)
    lab.expect("a", "10.42.0.2", "icmp")
    lab.expect("a", "10.42.0.2", "tcp", 7)


@recipe("dummy-ip")
def dummy_ip(lab):
    """A node-local address on a dummy device."""
    a = lab.node("a")
    lab.dummy(a, "dummy0")
    a.address("dummy0", "10.77.0.1/32")
    lab.expect("a", "10.77.0.1", "icmp")
