"""A dual-stack lab: containers on a bridge with IPv4 and IPv6, a host routing both
families to an outside node with NAT (MASQUERADE and, for IPv6, NAT66), and one
ip6tables DROP rule that only IPv6 meets.

    c1 (10.10.0.2, fd00:10::2) --+
                                 br0 (10.10.0.1, fd00:10::1) host eth1 (10.20.0.1, fd00:20::1) -- ext
    c2 (10.10.0.3, fd00:10::3) --+                                      (10.20.0.2, fd00:20::2)

ext has no route back to the containers' networks: their connections reach it only
because the host masquerades them (the server sees the host's address). Servers
answer in both families on one port. Parameters: bypass=1 puts an ACCEPT in front of
the IPv6 DROP (a mutation: the dropped_by check must fail), dad=1 adds the
containers' IPv6 addresses with duplicate address detection (realize waits for it).
"""

from nsbox.model import Lab
from nsbox.recipe import Param, recipe

V6_DROP = "-d fd00:20::2/128 -p tcp -m tcp --dport 8080 -j DROP"
V6_BYPASS = "-d fd00:20::2/128 -p tcp -m tcp --dport 8080 -j ACCEPT"


@recipe("docker-dual-stack", params=[Param("bypass", 0, "ACCEPT before the IPv6 DROP (mutation)", min=0, max=1),
                              Param("dad", 0, "containers' IPv6 addresses with DAD", min=0, max=1)])
def build(lab: Lab, bypass: int, dad: int) -> None:
    """Two containers on a dual-stack bridge; IPv4 and IPv6 NAT to an outside node; an ip6tables DROP."""
    lab.require("veth", "bridge", "nat", "conntrack", "ipv6")
    host, ext = lab.host, lab.node("ext")
    host.bridge("br0", "10.10.0.1/24")
    host.address("br0", "fd00:10::1/64")
    for i, name in ((2, "c1"), (3, "c2")):
        c = lab.node(name)
        lab.veth(c, "eth0", host, f"v{name}", b_master="br0")
        c.address("eth0", f"10.10.0.{i}/24")
        c.address("eth0", f"fd00:10::{i}/64", dad=bool(dad))
        c.route("default", via="10.10.0.1")
        c.route("default", via="fd00:10::1")
    lab.veth(host, "eth1", ext, "eth0")
    host.address("eth1", "10.20.0.1/24")
    host.address("eth1", "fd00:20::1/64")
    ext.address("eth0", "10.20.0.2/24")
    ext.address("eth0", "fd00:20::2/64")
    host.sysctl("net.ipv4.ip_forward", 1)
    host.sysctl("net.ipv6.conf.all.forwarding", 1)
    host.iptables("nat").append("POSTROUTING", "-s 10.10.0.0/24 -o eth1 -j MASQUERADE")
    host.ip6tables("nat").append("POSTROUTING", "-s fd00:10::/64 -o eth1 -j MASQUERADE")
    filter6 = host.ip6tables("filter")
    if bypass:
        filter6.append("FORWARD", V6_BYPASS)
    filter6.append("FORWARD", V6_DROP)
    for node in (lab.nodes["c2"], ext):
        node.serve("http", 80)
        node.serve("tcp", 7)
        node.serve("udp", 7)
    ext.serve("http", 8080)

    # the same servers, in both families, across the bridge
    for family in (4, 6):
        lab.expect("c1", "c2", "icmp", family=family)
        lab.expect("c1", "c2", "tcp", 7, family=family)
        lab.expect("c1", "c2", "udp", 7, family=family)
        lab.expect("c1", "c2", "http", 80, family=family, seen_from="10.10.0.2" if family == 4 else "fd00:10::2")
    # through the host's NAT: ext sees the host's address in each family
    lab.expect("c1", "ext", "http", 80, family=4, seen_from="10.20.0.1")
    v6 = lab.expect("c1", "ext", "http", 80, family=6, seen_from="fd00:20::1")
    lab.expect("c2", "fd00:20::2", "udp", 7, seen_from="fd00:20::1")
    lab.expect_conntrack("host", v6, reply_dst="fd00:20::1")
    # the IPv6 DROP: only IPv6 meets it
    lab.expect("c1", "ext", "tcp", 8080, family=6, allow=False, dropped_by=("host", "filter", "FORWARD", V6_DROP))
    lab.expect("c1", "ext", "tcp", 8080, family=4)
