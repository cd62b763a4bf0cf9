"""The lab bench/bench_probes.py measures: N nodes routed through one host (ptp style).

Routed, not bridged, on purpose: the kernel's ARP table is one table for all
namespaces (net.ipv4.neigh.default.gc_thresh3 = 1024 entries by default, settable
only in the initial namespace). An all-pairs matrix on one bridge needs N*(N-1)
entries -- 2,450 at N=50 -- and the overflow drops packets ("neighbor table
overflow!" in dmesg). Routed, each node has one neighbour and the host N.
"""

from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("probe-bench", params=[Param("nodes", 50, "nodes in the all-pairs matrix", min=2, max=250)])
def build(lab: Lab, nodes: int) -> None:
    """N nodes routed through the host; an all-pairs TCP matrix (N*(N-1) probes)."""
    lab.require("veth")
    lab.host.sysctl("net.ipv4.ip_forward", 1)
    members = []
    for i in range(nodes):
        n = lab.node(f"n{i}")
        lab.veth(n, "eth0", lab.host, f"veth{i}")
        lab.host.address(f"veth{i}", f"10.{100 + i // 250}.{i % 250}.1/24")
        n.address("eth0", f"10.{100 + i // 250}.{i % 250}.2/24")
        n.route("default", via=f"10.{100 + i // 250}.{i % 250}.1")
        n.serve("tcp", 7)
        members.append(n)
    lab.expect_matrix(members, "tcp", 7)
