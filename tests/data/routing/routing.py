"""Recipes for tests/kernel/test_kernel_routing.py: the two CNI layouts the kernel accepts
(kindnet/ptp, Calico) and one lab with every routing object nsbox builds."""

from nsbox.recipe import Param, recipe


@recipe("kindnet-ptp")
def kindnet_ptp(lab):
    """kindnet/CNI ptp: every host veth holds the same gateway /32 (10.244.0.1); each
    pod has a /32 and reaches the gateway through a scope-link route."""
    host = lab.host
    host.sysctl("net.ipv4.ip_forward", 1)
    for i, ip in ((1, "10.244.0.5"), (2, "10.244.0.6")):
        pod = lab.node(f"pod{i}")
        lab.veth(pod, "eth0", host, f"veth{i}")
        host.address(f"veth{i}", "10.244.0.1/32")          # the same /32 on every host veth
        host.route(f"{ip}/32", dev=f"veth{i}", scope="host")
        pod.address("eth0", f"{ip}/32")
        pod.route("10.244.0.1/32", dev="eth0", scope="link", src=ip)
        pod.route("10.244.0.0/24", via="10.244.0.1", dev="eth0", src=ip)
        pod.route("default", via="10.244.0.1", dev="eth0")
        pod.serve("tcp", 7)
    lab.expect("pod1", "pod2", "icmp")
    lab.expect("pod2", "pod1", "tcp", 7)
    lab.expect("pod1", "10.244.0.1", "icmp")


@recipe("calico", params=[Param("proxy_arp", 1, "proxy_arp on the host's cali veths (0: the negative control)",
                                min=0, max=1)])
def calico(lab, proxy_arp):
    """Calico: pods route through 169.254.1.1, an address nobody has; the host's
    cali veths have no address and answer ARP for it by proxy ARP."""
    host = lab.host
    router = lab.node("router")
    lab.veth(host, "eth0", router, "eth0")
    host.address("eth0", "192.168.1.10/24")
    router.address("eth0", "192.168.1.1/24")
    router.route("10.65.0.0/16", via="192.168.1.10")
    host.route("default", via="192.168.1.1")
    host.sysctl("net.ipv4.ip_forward", 1)
    for i, ip in ((1, "10.65.0.2"), (2, "10.65.0.3")):
        pod = lab.node(f"pod{i}")
        lab.veth(pod, "eth0", host, f"cali{i}")
        host.sysctl(f"net.ipv4.conf.cali{i}.proxy_arp", proxy_arp)
        host.sysctl(f"net.ipv4.neigh.cali{i}.proxy_delay", 0)
        host.route(f"{ip}/32", dev=f"cali{i}")
        pod.address("eth0", f"{ip}/32")
        pod.route("169.254.1.1", dev="eth0", scope="link")
        pod.route("default", via="169.254.1.1", dev="eth0")
        pod.serve("tcp", 7)
    router.serve("tcp", 7)
    lab.expect("pod1", "pod2", "icmp")
    lab.expect("pod2", "pod1", "tcp", 7)
    lab.expect("pod1", "router", "tcp", 7)


@recipe("routing-objects")
def routing_objects(lab):
    """Policy routing to table 100, metrics, proto, src, onlink, IPv6, static and
    proxy neighbours, bridge FDB entries (master and self)."""
    host = lab.host
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "10.1.0.1/24")
    b.address("eth0", "10.1.0.2/24")
    b.address("eth0", "10.99.0.1/32")      # answers ARP for a's onlink gateway
    b.address("lo", "10.60.0.1/32")
    b.address("lo", "10.70.0.1/32")
    b.address("lo", "10.80.0.1/32")
    # 10.60.0.0/24 only in table 100, chosen by a rule: traffic to 10.60.0.1 proves both
    a.route("10.60.0.0/24", dev="eth0", table=100, src="10.1.0.1")
    a.rule(100, priority=1000, dst="10.60.0.0/24")
    a.rule("main", priority=1001, src="10.1.0.1/24", iif="lo", fwmark=0x10, fwmask=0xff)
    # a gateway on no subnet of a: onlink
    a.route("10.70.0.0/24", via="10.99.0.1", dev="eth0", onlink=True)
    # two routes to one destination, told apart by metric; a routing daemon's proto
    a.route("10.80.0.0/24", via="10.1.0.2", metric=50, proto="static")
    a.route("10.80.0.0/24", via="10.1.0.2", metric=100, proto="bird")
    a.neigh("eth0", "10.1.0.77", "02:00:00:00:00:77")
    a.neigh("eth0", "10.1.0.78", "02:00:00:00:00:78", state="noarp")
    a.neigh("eth0", "10.1.0.79", proxy=True)
    a.address("eth0", "fd00:1::1/64")
    b.address("eth0", "fd00:1::2/64")
    a.route("fd00:60::/64", via="fd00:1::2", metric=300)
    # a bridge with FDB entries
    host.bridge("br0", "10.2.0.1/24")
    lab.veth(a, "eth1", host, "pa", b_master="br0")
    a.address("eth1", "10.2.0.2/24")
    host.fdb("pa", "02:00:00:00:aa:01")
    host.fdb("pa", "02:00:00:00:aa:02", state="permanent")
    host.fdb("br0", "02:00:00:00:aa:03", master=False, state="permanent")
    lab.expect("a", "10.60.0.1", "icmp")
    lab.expect("a", "10.70.0.1", "icmp")
    lab.expect("a", "10.80.0.1", "icmp")
    lab.expect("a", "host", "icmp")
