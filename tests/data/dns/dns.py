"""Docker's embedded DNS as dockerd sets it up in a container on a user-defined network.

The resolver listens on 127.0.0.11 at a random high port; the container's own nat
table sends port 53 there and back (DOCKER_OUTPUT DNAT, DOCKER_POSTROUTING SNAT), as in
a real dockerd 20.10 run (tests/kernel/test_kernel_real_docker.py runs one). It answers the names of containers
on the container's networks only. Parameter dnat=0 leaves the DNAT out (a mutation).
"""

from nsbox.model import Lab
from nsbox.recipe import Param, recipe

DNS_UDP = 45127  # dockerd picks a random port


@recipe("embedded-dns", params=[Param("dnat", 1, "write the DOCKER_OUTPUT DNAT", min=0, max=1)])
def build(lab: Lab, dnat: int) -> None:
    """A container asks 127.0.0.11 for its network's names, through Docker's own nat chains."""
    lab.require("veth", "nat")
    c1, c2 = lab.node("c1"), lab.node("c2")
    lab.veth(c1, "eth0", c2, "eth0")
    c1.address("eth0", "172.18.0.2/16")
    c2.address("eth0", "172.18.0.3/16")
    c2.serve("http", 80)
    resolver = lab.container("dockerd-dns", c1)  # the resolver is dockerd's, in c1's netns
    resolver.serve_dns(DNS_UDP, {"c1": "172.18.0.2", "c2": "172.18.0.3", "web": "172.18.0.3"},
                       address="127.0.0.11")
    nat = c1.iptables("nat")
    nat.new_chain("DOCKER_OUTPUT")
    nat.new_chain("DOCKER_POSTROUTING")
    nat.append("OUTPUT", "-d 127.0.0.11/32 -j DOCKER_OUTPUT")
    nat.append("POSTROUTING", "-d 127.0.0.11/32 -j DOCKER_POSTROUTING")
    if dnat:
        nat.append("DOCKER_OUTPUT", f"-d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT "
                                    f"--to-destination 127.0.0.11:{DNS_UDP}")
    nat.append("DOCKER_POSTROUTING", f"-s 127.0.0.11/32 -p udp -m udp --sport {DNS_UDP} -j SNAT --to-source :53")
    lab.virtual("127.0.0.11", proto="udp", port=53, node=c1, name="embedded DNS")
    lab.expect_dns(c1, "127.0.0.11", "c2", "172.18.0.3")
    lab.expect_dns(c1, "127.0.0.11", "web", "172.18.0.3", check_name="dns c1: web (alias)")
    lab.expect_dns(c1, "127.0.0.11", "c9", None, check_name="dns c1: c9 (on no network of c1)")
    lab.expect("c1", "c2", "http", 80)
