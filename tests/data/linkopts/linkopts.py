"""Recipes for tests/kernel/test_kernel_link_options.py: link, bridge and port options, admin state."""

from nsbox.recipe import recipe

BRIDGE_MAC = "02:42:0a:0b:0c:01"


@recipe("link-options")
def link_options(lab):
    """A bridge with a fixed MAC, one with STP; isolated and hairpin ports; a veth left down, lo left down."""
    host = lab.host
    host.bridge("br0", "10.7.0.1/24", mac=BRIDGE_MAC, txqueuelen=100, mtu=1400)
    # STP on: its ports would wait 2 x forward_delay (listening, learning) before
    # forwarding, so the STP bridge here carries no traffic; the test reads stp_state.
    host.bridge("br1", stp=True)
    for i in (1, 2, 3):
        c = lab.node(f"c{i}")
        lab.veth(c, "eth0", host, f"v{i}", b_master="br0", mtu=1400)
        c.address("eth0", f"10.7.0.1{i}/24")
        c.serve("tcp", 7)
    # c1 and c2 hang on isolated ports: neither reaches the other, both reach the
    # bridge itself and the non-isolated c3.
    host.set_link("v1", isolated=True, hairpin=True, txqueuelen=0)
    host.set_link("v2", isolated=True)
    lab.nodes["c1"].set_link("eth0", mac="02:00:00:00:07:01", txqueuelen=500)
    # a link of a registered kind takes the same options (in its creation request)
    lab.vxlan(host, "vx0", 42)
    host.set_link("vx0", mac="02:00:00:00:42:01", mtu=1450, txqueuelen=10)
    host.serve("tcp", 7)
    lab.expect("c1", "c2", "tcp", 7, allow=False, name="tcp/7 c1->c2 (both ports isolated)")
    lab.expect("c1", "c3", "tcp", 7)
    lab.expect("c2", "host", "tcp", 7)
    lab.expect("c3", "c2", "tcp", 7)

    # The book's intermediate states: a veth whose peer is down (NO-CARRIER), and
    # a fresh namespace whose lo was never brought up.
    d = lab.node("d")
    lab.veth(d, "eth0", host, "vd")
    host.set_link("vd", up=False)
    d.set_link("lo", up=False)
    # eth0 is up with NO-CARRIER. Its state is DOWN, not LOWERLAYERDOWN, on this
    # kernel (6.x): default_operstate() looks the peer up by ifindex in eth0's own
    # netns, and the peer lives in another one.
    lab.expect_link(d, "eth0", "DOWN")
    # A pair inside one namespace, one end down: the other end is LOWERLAYERDOWN.
    lab.veth(d, "x0", d, "x1")
    d.set_link("x1", up=False)
    lab.expect_link(d, "x0", "LOWERLAYERDOWN")
    lab.expect_link(host, "vd", "DOWN")
    lab.expect_link(d, "lo", "DOWN")
    lab.expect_link("c1", "eth0", "UP")
    lab.expect_link("c1", "lo", "UNKNOWN")  # lo has no carrier to speak of: up shows UNKNOWN


@recipe("vlan-filtering")
def vlan_filtering(lab):
    """A VLAN-aware bridge (vlan_filtering 1): SKIPs on kernels built without it."""
    lab.require("vlan_filtering")
    host = lab.host
    host.bridge("br0", "10.8.0.1/24", vlan_filtering=True)
    c = lab.node("c1")
    lab.veth(c, "eth0", host, "v1", b_master="br0")
    c.address("eth0", "10.8.0.11/24")
    lab.expect("c1", "10.8.0.1", "icmp")
