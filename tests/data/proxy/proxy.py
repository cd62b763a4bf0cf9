"""A published port with the userland proxy on, as dockerd sets it up (-p 8080:80):
nat DNAT for traffic from outside, docker-proxy for what DNAT does not see (the host's
own 127.0.0.1:8080). Parameter dnat=0 leaves the DNAT out: the proxy then answers
outside traffic too, and the server sees the gateway instead of the client (a mutation)."""

from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("proxy-lab", params=[Param("dnat", 1, "write the DNAT", min=0, max=1)])
def build(lab: Lab, dnat: int) -> None:
    """-p 8080:80 with docker-proxy: DNAT from outside, the proxy for the host's loopback."""
    lab.require("veth", "bridge", "nat")
    host, c1, out = lab.host, lab.node("c1"), lab.node("outside")
    host.bridge("br0", "192.0.2.1/24")
    lab.veth(c1, "eth0", host, "veth1", b_master="br0")
    c1.address("eth0", "192.0.2.2/24")
    c1.route("default", via="192.0.2.1")
    c1.serve("http", 80).serve("udp", 53)
    lab.veth(out, "eth0", host, "eth0")
    out.address("eth0", "203.0.113.1/24")
    host.address("eth0", "203.0.113.2/24")
    host.sysctl("net.ipv4.ip_forward", 1)
    nat = host.iptables("nat")
    nat.new_chain("DOCKER")
    nat.append("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    nat.append("OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER")
    if dnat:
        nat.append("DOCKER", "! -i br0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.2:80")
    host.proxy("tcp", 8080, "192.0.2.2", 80)
    host.proxy("udp", 5353, "192.0.2.2", 53)
    lab.expect("outside", "203.0.113.2", "http", 8080, answered_by=c1, seen_from="203.0.113.1",
               name="http outside->host:8080 (DNAT, the client seen)")
    lab.expect("host", "127.0.0.1", "http", 8080, answered_by=c1, seen_from="192.0.2.1",
               name="http host->127.0.0.1:8080 (docker-proxy)")
    lab.expect("outside", "203.0.113.2", "udp", 5353, answered_by=c1, seen_from="192.0.2.1",
               name="udp outside->host:5353 (docker-proxy)")
