"""Dual-stack pods and Services: IPv4 and IPv6 side by side (`--set mode=iptables|nftables`).

A two-node cluster (flannel host-gw on cni0) with kind's dual-stack addressing: every node
and pod has an IPv4 and an IPv6 address (pods 10.244.N.x and fd00:10:244:N::x), the nodes
route both families of each other's pod CIDRs, and the Service `web` (ipFamilyPolicy
RequireDualStack) has two ClusterIPs, 10.96.0.x and fd00:10:96::x. kube-proxy runs one
proxier per family: IPv4 in iptables (or `ip kube-proxy`), IPv6 in ip6tables (or
`ip6 kube-proxy`), both from nsbox.kits.kubeproxy's port of its syncProxyRules, from the
same Service and the EndpointSlice of each family.

Checks: pod to pod in both families across nodes; the Service's IPv4 and IPv6 ClusterIPs
each answered by one of the three endpoints with the client's own address of that family
seen (no masquerade inside the cluster), and 30 connections over IPv6 spread over all
three (the IPv6 proxier's own probability chain / numgen); the cluster DNS answers web's
name with A and AAAA.
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

WEB = ("web-1", "web-2", "web-3")


@recipe("dual-stack", params=[
    Param("mode", "iptables", "kube-proxy's mode: iptables or nftables", choices=k8s.PROXY_MODES),
])
def build(lab: Lab, mode: str = "iptables") -> None:
    """Dual-stack pods and a Service with an IPv4 and an IPv6 ClusterIP, both families reach."""
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode=mode, dual_stack=True)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    dns = k.cluster_dns(n1)
    for name, node in zip(WEB, (n1, n1, n2)):
        k.pod(node, name, labels={"app": "web"}).serve("http", 8080)
    client = k.pod(n2, "client")
    c4, c6 = k.pod_ip("client"), k.pod_ip6["client"]
    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"})

    # Pod to pod, each family, across the nodes (host-gw routes of both families).
    lab.expect(client, k.pod_ip("web-1"), "http", 8080, answered_by="web-1", seen_from=c4,
               name="http client->web-1 IPv4 (across nodes)")
    lab.expect(client, k.pod_ip6["web-1"], "http", 8080, answered_by="web-1", seen_from=c6,
               name="http client->web-1 IPv6 (across nodes)")
    # The Service, each family: kube-proxy's DNAT of that family to one of the endpoints.
    lab.expect(client, web.cluster_ip, "http", 80, answered_by=WEB, seen_from=c4,
               name=f"http client->web {web.cluster_ip} (IPv4 ClusterIP)")
    lab.expect(client, web.cluster_ip6, "http", 80, answered_by=WEB, seen_from=c6,
               name=f"http client->web [{web.cluster_ip6}] (IPv6 ClusterIP)")
    lab.expect("web-2", web.cluster_ip6, "http", 80, answered_by=WEB,
               name=f"http web-2->web [{web.cluster_ip6}] (IPv6, same node)")
    lab.expect_spread(client, web.cluster_ip6, 80, probes=30, at_least=3, max_share=0.7, answered_by=WEB,
                      name="spread http client->web IPv6 (3 endpoints)")
    # The cluster DNS: A and AAAA for the dual-stack Service.
    dns.expect(client, "web.default.svc.cluster.local", web.cluster_ip, check_name="dns client: web A")
    dns.expect(client, "web.default.svc.cluster.local", [web.cluster_ip6], qtype="AAAA",
               check_name="dns client: web AAAA")
