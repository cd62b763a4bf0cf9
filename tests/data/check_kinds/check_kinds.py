"""Recipe for tests/kernel/test_kernel_check_kinds.py: counted_by on rules of any target, deny
with a kind, seen_from with several addresses, and an ICMP conntrack entry.

a (10.90.1.2) -- host (router, masquerades a's traffic out of hb) -- b (10.90.2.2)
                                                                  -- c (10.90.3.2)
The host's FORWARD chain turns b's ports away in each way a denial can show."""

from nsbox.recipe import Param, recipe

MASQ = "-s 10.90.1.0/24 -o hb -j MASQUERADE"
FWD_UDP = "-s 10.90.1.0/24 -p udp --dport 5 -j ACCEPT"


@recipe("check-kinds", params=[
    Param("mutant", 0, "1: an SNAT rule ahead of the MASQUERADE takes a's traffic; 2: tcp/10 rejected with a port "
                       "unreachable, not admin prohibited", min=0, max=2)])
def build(lab, mutant):
    """counted_by, deny kinds, several seen_from addresses and ICMP conntrack, on one router."""
    host = lab.host
    host.sysctl("net.ipv4.ip_forward", 1)
    # Every REJECT here answers a with an ICMP error: the kernel's per-destination ICMP
    # rate limit (a burst of 6, then one a second) could swallow one on a loaded machine,
    # and a "refused" or "filtered" probe would then time out instead.
    host.sysctl("net.ipv4.icmp_ratelimit", 0)
    for name, net in (("a", 1), ("b", 2), ("c", 3)):
        n = lab.node(name)
        lab.veth(n, "eth0", host, f"h{name}")
        n.address("eth0", f"10.90.{net}.2/24")
        n.route("default", via=f"10.90.{net}.1")
        host.address(f"h{name}", f"10.90.{net}.1/24")
    b = lab.nodes["b"]
    for port in (7, 8, 10, 12, 13):
        b.serve("tcp", port)
    for port in (5, 11, 14):
        b.serve("udp", port)
    nat, filt = host.iptables("nat"), host.iptables("filter")
    nat.append("POSTROUTING", MASQ)
    if mutant == 1:  # an SNAT to the same address ahead of it: the server sees the same source
        nat.insert("POSTROUTING", "-s 10.90.1.0/24 -o hb -j SNAT --to-source 10.90.2.1", 1)
    filt.append("FORWARD", FWD_UDP)
    filt.append("FORWARD", "-p tcp --dport 8 -j REJECT --reject-with tcp-reset")
    filt.append("FORWARD", "-p tcp --dport 10 -j REJECT --reject-with "
                + ("icmp-port-unreachable" if mutant == 2 else "icmp-admin-prohibited"))
    filt.append("FORWARD", "-p udp --dport 11 -j REJECT --reject-with icmp-admin-prohibited")
    filt.append("FORWARD", "-p tcp --dport 12 -j REJECT --reject-with icmp-host-unreachable")
    filt.append("FORWARD", "-p tcp --dport 13 -j DROP")
    filt.append("FORWARD", "-p udp --dport 14 -j REJECT")
    filt.append("FORWARD", "-d 10.90.3.2 -p icmp -j REJECT --reject-with icmp-net-prohibited")

    lab.expect("a", "b", "tcp", 7, seen_from="10.90.2.1", counted_by=("host", "nat", "POSTROUTING", MASQ),
               name="tcp/7 a->b masqueraded (counted by MASQUERADE)")
    lab.expect("a", "b", "udp", 5, seen_from=["10.90.3.1", "10.90.2.1"], counted_by=("host", "filter", "FORWARD", FWD_UDP),
               name="udp/5 a->b (counted by ACCEPT, seen from one of two)")
    lab.expect("a", "b", "tcp", 8, allow=False, deny="refused", name="tcp/8 a->b refused (tcp-reset)")
    lab.expect("a", "b", "tcp", 10, allow=False, deny="filtered", name="tcp/10 a->b filtered (admin prohibited)")
    lab.expect("a", "b", "udp", 11, allow=False, deny="filtered", name="udp/11 a->b filtered (admin prohibited)")
    lab.expect("a", "b", "tcp", 12, allow=False, deny="unreachable", name="tcp/12 a->b unreachable (host unreachable)")
    lab.expect("a", "b", "tcp", 13, allow=False, deny="timeout", name="tcp/13 a->b timeout (DROP)",
               dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 13 -j DROP"))
    lab.expect("a", "b", "udp", 14, allow=False, deny="refused", name="udp/14 a->b refused (port unreachable)")
    lab.expect("a", "c", "icmp", allow=False, deny="filtered", name="icmp a->c filtered (net prohibited)")
    ping = lab.expect("a", "b", "icmp", name="icmp a->b")
    lab.expect_conntrack("host", ping, reply_dst="10.90.2.1", reply_src="10.90.2.2", name="conntrack host: icmp a->b")
