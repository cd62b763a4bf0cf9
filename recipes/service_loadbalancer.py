"""Kubernetes LoadBalancer Services with a MetalLB-style layer-2 address, as kube-proxy
writes them (`--set mode=iptables|nftables`).

Two nodes (flannel host-gw layout), the endpoint web-1 (app=web) on node2, and two
machines on the node network that are no nodes: "outside" (.200) and "stranger" (.201).
MetalLB hands each Service an address of the node network's pool and its speaker on
the elected node (node1 here) answers ARP for it; nobody holds the address: kube-proxy's
rules on node1 take the packets to it (KUBE-EXT / the service-ips map).

- `web` (192.168.70.240): outside reaches it, node1 answers ARP (outside's neighbour
  entry holds node1's MAC), the packet is DNAT'ed on node1 to web-1 on node2 and
  masqueraded (externalTrafficPolicy Cluster) to node1's address; conntrack on node1
  shows both.
- `web-ranged` (192.168.70.241, loadBalancerSourceRanges 192.168.70.200/32): outside,
  in the range, is answered; stranger, outside it, is dropped by kube-proxy's firewall
  chain (KUBE-FW / firewall-ips), a timeout, not a refusal.
"""

from nsbox.kits import k8s
from nsbox.kits.kubeproxy.names import chain_hash
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

LB_IP, LB_RANGED = "192.168.70.240", "192.168.70.241"
NODE1_MAC = "02:42:c0:a8:46:0b"  # fixed, so the ARP answer can be checked against it


@recipe("service-loadbalancer", params=[
    Param("mode", "iptables", "kube-proxy's mode: iptables or nftables", choices=k8s.PROXY_MODES),
])
def build(lab: Lab, mode: str = "iptables") -> None:
    """LoadBalancer Services by kube-proxy (mode=iptables|nftables): an L2 address on one node, source ranges."""
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode=mode)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    n1.node.set_link("eth0", mac=NODE1_MAC)
    outside = k.outside("outside")
    stranger = k.outside("stranger", host=201)
    k.pod(n2, "web-1", labels={"app": "web"}).serve("http", 8080)
    web1 = k.pod_ip("web-1")

    k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"}, type="LoadBalancer",
              load_balancer_ip=LB_IP)
    k.service("web-ranged", k8s.Port(80, 8080, name="http"), selector={"app": "web"}, type="LoadBalancer",
              load_balancer_ip=LB_RANGED, load_balancer_source_ranges=[f"{k.outside_ip}/32"])
    # MetalLB's speaker on node1 announces both addresses.
    k.l2_announce(n1, LB_IP)
    k.l2_announce(n1, LB_RANGED)

    to_lb = lab.expect(outside, LB_IP, "http", 80, answered_by="web-1", seen_from=n1.ip,
                       name="http outside->web LB 192.168.70.240 (via node1, masqueraded to node1)")
    lab.expect_conntrack("node1", to_lb, reply_dst=n1.ip, reply_src=web1, reply_sport=8080,
                         name="conntrack node1: LB address DNAT'ed to web-1 and masqueraded")
    lab.expect_neigh(outside, LB_IP, lladdr=NODE1_MAC, dev="eth0",
                     name="neigh outside: the LB address answered by node1 (L2 announcement)")
    lab.expect(outside, LB_RANGED, "http", 80, answered_by="web-1", seen_from=n1.ip,
               name="http outside->web-ranged (in loadBalancerSourceRanges)")
    # iptables mode: KUBE-FW-* lets the listed ranges on and the filter table's
    # KUBE-PROXY-FIREWALL drops the rest; the deny ends on that rule's counter (nftables
    # mode's drop has no counter: there it waits out its timeout).
    ranged_drop = None if mode != "iptables" else (
        "node1", "filter", "KUBE-PROXY-FIREWALL",
        f'-d {LB_RANGED}/32 -p tcp -m comment --comment "default/web-ranged:http traffic not accepted by '
        f'KUBE-FW-{chain_hash("default/web-ranged:http", "tcp")}" -m tcp --dport 80 -j DROP')
    lab.expect(stranger, LB_RANGED, "tcp", 80, allow=False, dropped_by=ranged_drop,
               name="tcp stranger->web-ranged (outside loadBalancerSourceRanges: dropped)")
    lab.expect(stranger, LB_IP, "http", 80, answered_by="web-1",
               name="http stranger->web LB (no source ranges: answered)")
