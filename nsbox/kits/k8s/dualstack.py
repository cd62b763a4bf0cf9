"""Dual-stack on the k8s kit: IPv6 beside IPv4 for nodes, pods and Services, as a kind
cluster with `ipFamily: dual` has it (kind's defaults: pod subnet fd00:10:244::/56, service
subnet fd00:10:96::/112; its Docker network fc00:f853:ccd:e793::/64).

    k = Cluster(lab, cni="bridge", dual_stack=True)
    web = k.service("web", Port(80, 8080), selector={"app": "web"})   # ipFamilyPolicy RequireDualStack
    lab.expect("client", web.cluster_ip6, "http", 80, answered_by=...)

What each piece gets (flannel host-gw's dual-stack layout, the bridge plugin given both
host-local ranges):
- the LAN: the switch's br0 and every node's eth0 an IPv6 address too, a default IPv6
  route via the switch; the node forwards IPv6 (net.ipv6.conf.all.forwarding=1) and passes
  bridged IPv6 through ip6tables (bridge-nf-call-ip6tables, as kube-proxy needs);
- a node: its IPv6 pod CIDR (fd00:10:244:<n>::/64), cni0's gateway ::1 in it, routes to the
  other nodes' IPv6 pod CIDRs via their IPv6 LAN address (host-gw, both ways);
- a pod: an IPv6 address on eth0 beside the IPv4 one (host-local's second range: the same
  host number), its default IPv6 route via cni0's gateway;
- a Service: a second ClusterIP from the IPv6 service CIDR (spec.clusterIPs, IPv4 first);
  kube-proxy runs one proxier per family (its dual-stack meta-proxier): the IPv6 one
  renders the same Services with their IPv6 ClusterIP and the IPv6 EndpointSlices (the
  pods' IPv6 addresses), into ip6tables (mode=iptables) or the `ip6 kube-proxy` table
  (mode=nftables).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING

from nsbox.kits.kubeproxy.model import Endpoint, EndpointSlice, EndpointSlicePort, ProxierConfig, Service

if TYPE_CHECKING:
    from nsbox.kits.k8s.cluster import Cluster, K8sNode
    from nsbox.kits.k8s.services import ServiceHandle

CLUSTER_CIDR6 = "fd00:10:244::/56"
SERVICE_CIDR6 = "fd00:10:96::/112"
LAN_SUBNET6 = "fc00:f853:ccd:e793::/64"


def node_cidr6(k: Cluster, index: int) -> str:
    """The node's IPv6 pod CIDR: the cluster's /56 cut in /64s, the n-th (1-based) as
    kube-controller-manager's range allocator hands them out in order."""
    return str(list(ipaddress.IPv6Network(k.cluster_cidr6).subnets(new_prefix=64))[index + 1])


def add_node(k: Cluster, kn: K8sNode, index: int) -> None:
    n = kn.node
    lan6 = ipaddress.IPv6Network(k.lan6)
    kn.ip6 = str(lan6.network_address + 10 + index + 1)
    kn.pod_cidr6 = node_cidr6(k, index)
    n.address("eth0", f"{kn.ip6}/{lan6.prefixlen}")
    n.route("default", via=k.router_ip6)
    n.sysctl("net.ipv6.conf.all.forwarding", 1)
    # A node of a real cluster has been up long past its link-locals' DAD (about a second);
    # a lab is probed at once, and neighbour discovery waits for a tentative link-local to
    # settle, so every first IPv6 probe across the nodes timed out (dual-stack: 2.3 s, 2 tries
    # per check). The nodes' own links skip it (the pods' eth0 already do, as the bridge plugin).
    for ifname in ("eth0", "cni0"):
        n.sysctl(f"net.ipv6.conf.{ifname}.accept_dad", 0)
    n.sysctl("net.bridge.bridge-nf-call-ip6tables", 1, optional=True)
    gw6 = str(ipaddress.IPv6Network(kn.pod_cidr6).network_address + 1)
    n.address("cni0", f"{gw6}/64")
    for other in k.nodes.values():
        n.route(other.pod_cidr6, via=other.ip6)
        other.node.route(kn.pod_cidr6, via=kn.ip6)


def add_pod(k: Cluster, kn: K8sNode, pod_name: str, ip4: str) -> str:
    """The pod's IPv6 address: the same host number as its IPv4 one (host-local's second
    range hands them out in step here), on eth0, and its default route via cni0."""
    host = int(ipaddress.IPv4Address(ip4)) - int(ipaddress.IPv4Network(kn.pod_cidr).network_address)
    net6 = ipaddress.IPv6Network(kn.pod_cidr6)
    ip6 = str(net6.network_address + host)
    p = k.lab.nodes[pod_name]
    p.address("eth0", f"{ip6}/64")
    p.route("default", via=str(net6.network_address + 1))
    return ip6


def allocate(k: Cluster) -> str:
    taken = {s.cluster_ip6 for s in k.services}
    net = ipaddress.IPv6Network(k.service_cidr6)
    i = 10
    while str(net.network_address + i) in taken:
        i += 1
    return str(net.network_address + i)


def api6(svc: ServiceHandle) -> Service:
    """The Service as the IPv6 proxier sees it: its IPv6 ClusterIP (kube-proxy takes the
    ClusterIP of its own family from spec.clusterIPs); external addresses of IPv4 dropped."""
    return dataclasses.replace(svc.api, cluster_ip=svc.cluster_ip6, external_ips=(), load_balancer_ingress=(),
                               load_balancer_source_ranges=())


def slice6(k: Cluster, svc: ServiceHandle, pods: list[str]) -> EndpointSlice:
    """The EndpointSlice controller's IPv6 slice: one per address family."""
    eps = tuple(Endpoint(addresses=(k.pod_ip6[p],), node_name=k._pod_of[p][0].name, ready=True, serving=True,
                         terminating=False) for p in pods)
    ports = tuple(EndpointSlicePort(p.name, p.target, p.proto) for p in svc.ports)
    return EndpointSlice(svc.namespace, svc.name, eps, ports, address_type="IPv6", name=f"{svc.name}-v6xyz")


def proxier_config6(k: Cluster, kn: K8sNode) -> ProxierConfig:
    return ProxierConfig(
        node_name=kn.name, node_ip=kn.ip6, family=6, cluster_cidr=k.cluster_cidr6, masquerade_mark="0x4000",
        local_ips=(kn.ip6, "::1"), nfacct=False, random_fully=k.mode == "iptables",
        node_port_addresses=None if k.mode == "iptables" else "primary", service_cidrs=(k.service_cidr6,))
