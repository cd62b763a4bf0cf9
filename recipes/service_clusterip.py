"""Kubernetes ClusterIP Services, as kube-proxy writes them (`--set mode=iptables|nftables`).

A two-node cluster (flannel host-gw layout: cni0 on each node, hairpin ports) with three
pods labelled app=web (web-1 and web-2 on node1, web-3 on node2) and a client pod on
node2. kube-proxy's rules on every node come from nsbox.kits.kubeproxy, the port of
kube-proxy's own syncProxyRules (iptables: the restore payload and the jump rules it
inserts; nftables: the `ip kube-proxy` table), from the Services and the EndpointSlices
the pods make:

- `web` (selector app=web): http 80 -> targetPort 8080, tcp 7 -> 7007, udp 53 -> 5353.
  Every port answers from the three endpoints (answered_by), the client's own address
  seen (pod -> Service: no masquerade), and 30 connections spread over all three (the
  `-m statistic --probability` chain or `numgen random mod 3`).
- `solo` (web-1 only): conntrack shows the DNAT (reply from web-1:8080); web-1 reaching
  itself through it (hairpin) is masqueraded to cni0's address, as kube-proxy marks a
  connection whose source is the endpoint itself; node2 (not a pod) reaching it is
  masqueraded to node2's address.
- `near` (app=web, internalTrafficPolicy Local): node2's client is answered by web-3 (the
  endpoint on its node) only, 10 times of 10; web-1 by a node1 endpoint; `near-solo`
  (web-1 only, Local) drops node2's client (no endpoint on its node).
- `sticky` (app=web, sessionAffinity ClientIP): 10 connections of the client all answered
  by one endpoint.
- `empty` (selector app=none, no endpoints): kube-proxy REJECTs, so the connection is
  refused at once instead of timing out.
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

WEB = ("web-1", "web-2", "web-3")
SPREAD_PROBES = 30


@recipe("service-clusterip", params=[
    Param("mode", "iptables", "kube-proxy's mode: iptables or nftables", choices=k8s.PROXY_MODES),
])
def build(lab: Lab, mode: str = "iptables") -> None:
    """ClusterIP Services by kube-proxy (mode=iptables|nftables): ports, UDP, spread, hairpin, REJECT."""
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode=mode)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    for name, node in zip(WEB, (n1, n1, n2)):
        k.pod(node, name, labels={"app": "web"}).serve("http", 8080).serve("tcp", 7007).serve("udp", 5353)
    client = k.pod(n2, "client")
    client_ip = k.pod_ip(client)

    web = k.service("web", [k8s.Port(80, 8080, name="http"), k8s.Port(7, 7007, name="echo"),
                            k8s.Port(53, 5353, proto="UDP", name="dns")], selector={"app": "web"})
    solo = k.service("solo", k8s.Port(80, 8080, name="http"), pods=["web-1"])
    empty = k.service("empty", k8s.Port(80, 8080, name="http"), selector={"app": "none"})

    # Every port of web, port != targetPort, TCP and UDP: one of the endpoints answers, and
    # sees the client pod itself (traffic from the cluster CIDR is not masqueraded).
    lab.expect(client, web, "http", 80, answered_by=WEB, seen_from=client_ip,
               name="http client->web:80 (targetPort 8080)")
    lab.expect(client, web, "tcp", 7, answered_by=WEB, seen_from=client_ip, name="tcp client->web:7 (targetPort 7007)")
    lab.expect(client, web, "udp", 53, answered_by=WEB, seen_from=client_ip,
               name="udp client->web:53 (targetPort 5353)")
    lab.expect("web-2", web, "http", 80, answered_by=WEB, name="http web-2->web:80")
    # Spread: 30 connections, all three endpoints answer, none more than 70% of them.
    lab.expect_spread(client, web, 80, probes=SPREAD_PROBES, at_least=3, max_share=0.7,
                      name="spread http client->web (3 endpoints)")

    # The DNAT in the kernel's own table: node2 (the client's node) sent it to web-1:8080.
    web1 = k.pod_ip("web-1")
    to_solo = lab.expect(client, solo, "http", 80, answered_by="web-1", seen_from=client_ip,
                         name="http client->solo:80 (DNAT to web-1 across nodes)")
    lab.expect_conntrack("node2", to_solo, reply_dst=client_ip, reply_src=web1, reply_sport=8080,
                         name="conntrack node2: client->solo DNAT'ed to web-1:8080")
    # Hairpin: web-1 reaches itself through solo, masqueraded to cni0's address on node1.
    hairpin = lab.expect("web-1", solo, "http", 80, answered_by="web-1", seen_from=n1.gateway,
                         name="http web-1->solo:80 (hairpin, masqueraded)")
    lab.expect_conntrack("node1", hairpin, reply_dst=n1.gateway, reply_src=web1, reply_sport=8080,
                         name="conntrack node1: hairpin masqueraded to cni0")
    # A node (outside the cluster CIDR) is masqueraded to its own address on the way out.
    lab.expect("node2", solo, "http", 80, answered_by="web-1", seen_from=n2.ip,
               name="http node2->solo:80 (masqueraded to node2)")

    # internalTrafficPolicy Local: a pod's connection goes to an endpoint on its own node
    # only (kube-proxy's KUBE-SVL chain / local-only endpoint set): from node2's client only
    # web-3 answers, 10 times out of 10; with no endpoint on the client's node (near-solo:
    # web-1 on node1) kube-proxy drops it.
    near = k.service("near", k8s.Port(80, 8080, name="http"), selector={"app": "web"},
                     internal_traffic_policy="Local")
    near_solo = k.service("near-solo", k8s.Port(80, 8080, name="http"), pods=["web-1"],
                          internal_traffic_policy="Local")
    lab.expect_spread(client, near, 80, probes=10, at_least=1, max_share=1.0, answered_by=["web-3"],
                      name="internalTrafficPolicy Local: client->near only node2's web-3")
    lab.expect("web-1", near, "http", 80, answered_by=["web-1", "web-2"],
               name="internalTrafficPolicy Local: web-1->near a node1 endpoint")
    # iptables mode: filter KUBE-SERVICES' "has no local endpoints" DROP, so the deny ends on
    # its counter (nftables mode drops through a verdict map element: no counter to read)
    no_local = None if mode != "iptables" else (
        "node2", "filter", "KUBE-SERVICES",
        f'-d {near_solo.cluster_ip}/32 -p tcp -m comment --comment "default/near-solo:http has no local endpoints" '
        f'-m tcp --dport 80 -j DROP')
    lab.expect(client, near_solo, "tcp", 80, allow=False, dropped_by=no_local,
               name="internalTrafficPolicy Local: client->near-solo (no endpoint on node2: dropped)")

    # sessionAffinity ClientIP: kube-proxy's `-m recent` (nftables: a per-endpoint affinity
    # set) sends every connection of one client to the endpoint its first one reached.
    sticky = k.service("sticky", k8s.Port(80, 8080, name="http"), selector={"app": "web"},
                       session_affinity="ClientIP")
    lab.expect_spread(client, sticky, 80, probes=10, at_least=1, at_most=1, answered_by=WEB,
                      name="sessionAffinity ClientIP: client->sticky one endpoint for all 10")

    # No endpoints: kube-proxy's REJECT (iptables: filter KUBE-SERVICES; nftables: the
    # no-endpoint-services map), so the client is refused at once.
    lab.expect(client, empty, "tcp", 80, allow=False, name="tcp client->empty:80 (no endpoints: REJECT)")
