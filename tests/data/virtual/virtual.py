"""Virtual addresses, answered_by, loopback probes, containers sharing a netns, machines.

A "node1" machine: its root netns `node1` with a bridge br0 10.0.0.1/24, pods p1 and p2
behind it; p1 holds two containers (p1 itself and `side`, sharing p1's netns). `client`
sits outside on 192.0.2.0/24.
- A Service-like virtual address 10.96.0.10:80 that node1's nat OUTPUT/PREROUTING DNAT to
  p1:8080 or p2:8080 (statistic random, so either may answer).
- A published port node1:8080 (192.0.2.1) DNAT'ed to side:9090 (the second container of p1).
- Loopback: p1 reaches its own 127.0.0.1:7 (tcp echo of `side`, same netns).
Parameters are mutations for tests/kernel/test_kernel_virtual.py: dnat=0 leaves the published
port's DNAT out; wrong=1 expects the Service to be answered by `client` (it is not).
"""

from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("virtual-lab", params=[Param("dnat", 1, "write the published port's DNAT", min=0, max=1),
                               Param("wrong", 0, "expect a wrong answerer", min=0, max=1)])
def build(lab: Lab, dnat: int, wrong: int) -> None:
    """Virtual addresses, answered_by, loopback, containers sharing a netns, a machine."""
    lab.require("veth", "bridge", "nat", "conntrack")
    node1 = lab.node("node1")
    node1.bridge("br0", "10.0.0.1/24")
    node1.sysctl("net.ipv4.ip_forward", 1)
    pods = []
    for i in (1, 2):
        p = lab.node(f"p{i}")
        lab.veth(p, "eth0", node1, f"veth{i}", b_master="br0")
        p.address("eth0", f"10.0.0.{i + 1}/24")
        p.route("default", via="10.0.0.1")
        p.serve("http", 8080)
        pods.append(p)
    side = lab.container("side", pods[0]).serve("tcp", 9090).serve("tcp", 7)
    client = lab.node("client")
    lab.veth(client, "eth0", node1, "eth1")
    client.address("eth0", "192.0.2.2/24")
    node1.address("eth1", "192.0.2.1/24")
    client.route("10.96.0.0/12", via="192.0.2.1")
    client.serve("http", 8080)
    node1.route("default", via="192.0.2.2")  # kube-proxy's DNAT happens after a route is found
    lab.machine("node1", [node1, *pods])

    nat = node1.iptables("nat")
    nat.new_chain("SVC")
    nat.append("PREROUTING", "-j SVC")
    nat.append("OUTPUT", "-j SVC")
    nat.append("SVC", "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.5 "
                      "-j DNAT --to-destination 10.0.0.2:8080")
    nat.append("SVC", "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.3:8080")
    if dnat:
        nat.append("SVC", "-d 192.0.2.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:9090")

    lab.virtual("10.96.0.10", name="service web")
    lab.virtual("192.0.2.1", proto="tcp", port=8080, node=node1, name="node1:8080 published")

    lab.expect("client", "10.96.0.10", "http", 80, answered_by={"client"} if wrong else {"p1", "p2"},
               name="http client->service")
    lab.expect("node1", "10.96.0.10", "http", 80, answered_by={"p1", "p2"}, name="http node1->service")
    pub = lab.expect("client", "192.0.2.1", "tcp", 8080, answered_by=side, seen_from="192.0.2.2",
                     name="tcp client->node1:8080 (published)")
    lab.expect_conntrack("node1", pub, reply_dst="192.0.2.2", reply_src="10.0.0.2", reply_sport=9090)
    lab.expect("p1", "127.0.0.1", "tcp", 7, answered_by="side", name="tcp p1->127.0.0.1:7 (loopback)")
    lab.expect("side", "p2", "http", 8080, answered_by="p2", name="http side->p2")
    lab.expect("client", "10.0.0.2", "tcp", 9090, allow=False, name="tcp client->p1 direct (no route)")
    # a third container of p1 wants side's port: the kernel refuses its listen
    lab.container("late", pods[0])
    lab.expect_port_conflict("late", "tcp", 9090, held_by=side)
    lab.expect_interfaces("side", ["lo", "eth0"])  # p1's netns: side shares it
