"""A small Kubernetes kit: nodes with a CNI bridge, pods, and ClusterIP Services as
kube-proxy (iptables mode) writes them.

    k = Cluster(lab)
    n1 = k.node("node1", "10.244.1.0/24")        # a machine: eth0 on the cluster LAN, cni0
    p1 = k.pod(n1, "p1")                          # netns, veth into cni0 (hairpin), default via .1
    svc = k.service("web", 80, 8080, [p1, p2])    # ClusterIP, KUBE-SERVICES/SVC/SEP on every node

Nodes: like the CNI bridge plugin (real-systems/cni-1.1.1-run.log): bridge cni0 with the
pod CIDR's first address (isGateway), host veth `veth` + 8 hex digits with hairpin on,
ip_forward=1 and bridge-nf-call-iptables=1 (kube-proxy needs bridged pod->Service->same
node traffic to see iptables). Pods on other nodes are reached through routes to their
pod CIDRs via the node's LAN address (host-gw/kindnet style). Services: the nat rules of
dataplane.md §4a (ClusterIP with Cluster policy; no NodePort, no filter chains), chain
names hashed as kube-proxy hashes them; the ClusterIP is a `lab.virtual` address, so a
probe may target it and `answered_by=` proves which endpoint served.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass, field

from nsbox.errors import ValidationError
from nsbox.model import Lab, Node
from nsbox.model.firewall import Table
from nsbox.model.rules import parse_rule

LAN_SUBNET = "192.168.70.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
MASQ_MARK = "0x4000/0x4000"


def port_proto_hash(*parts: str) -> str:
    """kube-proxy's chain-name hash: base32(sha256(concatenation))[:16]."""
    return base64.b32encode(hashlib.sha256("".join(parts).encode()).digest()).decode()[:16]


def probability(n_left: int) -> str:
    """`-m statistic --probability 1/N` as iptables-save prints it: kube-proxy writes
    %0.10f, the kernel keeps lround(p * 2^31) and iptables prints that / 2^31 as %.11f."""
    return f"{round(0x80000000 / n_left) / 0x80000000:.11f}"


@dataclass
class K8sNode:
    name: str
    node: Node
    ip: str
    pod_cidr: str
    pods: list[Node] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.pod_cidr).network_address + 1)


@dataclass
class Service:
    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    target_port: int
    proto: str
    endpoints: list[str]  # pod IPs

    @property
    def port_id(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port_name}"

    @property
    def svc_chain(self) -> str:
        return "KUBE-SVC-" + port_proto_hash(self.port_id, self.proto)

    def sep_chain(self, ip: str) -> str:
        return "KUBE-SEP-" + port_proto_hash(self.port_id, self.proto, f"{ip}:{self.target_port}")


class Cluster:
    """A cluster: its LAN (a switch node with bridge br0), nodes, pods and Services."""

    def __init__(self, lab: Lab, *, cluster_cidr: str = CLUSTER_CIDR, service_cidr: str = SERVICE_CIDR,
                 lan_subnet: str = LAN_SUBNET, switch: str = "k8s-lan") -> None:
        self.lab = lab
        self.cluster_cidr = str(ipaddress.IPv4Network(cluster_cidr))
        self.service_net = ipaddress.IPv4Network(service_cidr)
        self.lan = ipaddress.IPv4Network(lan_subnet)
        self.nodes: dict[str, K8sNode] = {}
        self.services: list[Service] = []
        self._pod_of: dict[str, tuple[K8sNode, str]] = {}
        self._veths = 0
        self._next_cluster_ip = 10  # 10.96.0.1 is the kubernetes Service; handed out from .10
        lab.require("veth", "bridge", "nat", "conntrack")
        # The LAN's switch is its router too (.1, as a kind cluster's Docker network
        # gateway): every node needs a default route, or its own traffic to a ClusterIP
        # is "network unreachable" before OUTPUT's DNAT gets to rewrite it.
        self.router_ip = str(self.lan.network_address + 1)
        self.switch = lab.node(switch)
        self.switch.bridge("br0", f"{self.router_ip}/{self.lan.prefixlen}")

    def node(self, name: str, pod_cidr: str) -> K8sNode:
        """A Kubernetes node NAME (a machine) with eth0 on the cluster LAN and cni0 for POD_CIDR."""
        try:
            cidr = ipaddress.IPv4Network(pod_cidr)
        except ValueError as e:
            raise ValidationError(f"k8s node {name}: bad pod CIDR: {e}") from None
        if not cidr.subnet_of(ipaddress.IPv4Network(self.cluster_cidr)):
            raise ValidationError(f"k8s node {name}: pod CIDR {cidr} is outside the cluster CIDR {self.cluster_cidr}")
        n = self.lab.node(name)
        ip = str(self.lan.network_address + 10 + len(self.nodes) + 1)
        self.lab.veth(n, "eth0", self.switch, f"p-{name}"[:15], b_master="br0")
        n.address("eth0", f"{ip}/{self.lan.prefixlen}")
        n.route("default", via=self.router_ip)
        kn = K8sNode(name, n, ip, str(cidr))
        n.bridge("cni0", f"{kn.gateway}/{cidr.prefixlen}")
        n.sysctl("net.ipv4.ip_forward", 1)
        n.sysctl("net.bridge.bridge-nf-call-iptables", 1, optional=True)
        # Pod CIDRs of the other nodes, via their LAN address (both ways).
        for other in self.nodes.values():
            n.route(other.pod_cidr, via=other.ip)
            other.node.route(kn.pod_cidr, via=ip)
        self.nodes[name] = kn
        self._kube_proxy_skeleton(n)
        for svc in self.services:
            self._service_rules(n, svc)
        self.lab.machine(name, [n])
        return kn

    def pod(self, node: K8sNode | str, name: str) -> Node:
        """A pod NAME on NODE: its netns, eth0 on a veth into cni0 (host end hairpin on,
        as the bridge plugin's hairpinMode), the next address of the pod CIDR, default via
        the node's cni0 address."""
        kn = node if isinstance(node, K8sNode) else self.nodes[node]
        p = self.lab.node(name)
        self._veths += 1
        veth = f"veth{(0x5eed0000 + self._veths * 0x9e3779b) & 0xffffffff:08x}"  # random in CNI
        self.lab.veth(p, "eth0", kn.node, veth, b_master="cni0")
        kn.node.set_link(veth, hairpin=True)
        net = ipaddress.IPv4Network(kn.pod_cidr)
        ip = str(net.network_address + 2 + len(kn.pods))
        if ipaddress.ip_address(ip) not in net or ipaddress.ip_address(ip) == net.broadcast_address:
            raise ValidationError(f"k8s node {kn.name}: no address left in {net} for pod {name}")
        p.address("eth0", f"{ip}/{net.prefixlen}")
        p.route("default", via=kn.gateway)
        kn.pods.append(p)
        self._pod_of[name] = (kn, ip)
        self._regroup(kn)
        return p

    def _regroup(self, kn: K8sNode) -> None:
        """The node's machine holds its pods' namespaces too."""
        for i, m in enumerate(self.lab.machines):
            if m.name == kn.name:
                self.lab.machines[i] = dataclasses.replace(m, nodes=(kn.name, *(p.name for p in kn.pods)))

    def service(self, name: str, port: int, target_port: int, endpoints: list[Node | str], *,
                proto: str = "tcp", namespace: str = "default", port_name: str = "http",
                cluster_ip: str | None = None) -> Service:
        """A ClusterIP Service with ENDPOINTS (pods): its ClusterIP becomes a virtual address
        of the lab, and every node's kube-proxy writes its chains."""
        if proto not in ("tcp", "udp"):
            raise ValidationError(f"service {name}: proto is tcp or udp")
        ips = []
        for e in endpoints:
            pname = e if isinstance(e, str) else e.name
            if pname not in self._pod_of:
                raise ValidationError(f"service {name}: endpoint {pname} is no pod of the cluster")
            ips.append(self._pod_of[pname][1])
        if cluster_ip is None:
            cluster_ip = str(self.service_net.network_address + self._next_cluster_ip)
            self._next_cluster_ip += 1
        elif ipaddress.ip_address(cluster_ip) not in self.service_net:
            raise ValidationError(f"service {name}: ClusterIP {cluster_ip} is outside {self.service_net}")
        # kube-proxy orders endpoints by address.
        ips.sort(key=ipaddress.ip_address)
        svc = Service(namespace, name, port_name, cluster_ip, port, target_port, proto, ips)
        self.services.append(svc)
        self.lab.virtual(cluster_ip, name=f"{namespace}/{name}")
        for kn in self.nodes.values():
            self._service_rules(kn.node, svc)
        return svc

    # ---------------------------------------------------------------- kube-proxy

    def _kube_proxy_skeleton(self, n: Node) -> None:
        nat = n.iptables("nat")
        for chain in ("KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-PROXY-CANARY", "KUBE-SERVICES"):
            nat.new_chain(chain)
        nat.append("PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
        nat.append("OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
        nat.append("POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING')
        nat.append("KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}")
        nat.append("KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK} -j RETURN")
        nat.append("KUBE-POSTROUTING", "-j MARK --set-xmark 0x4000/0x0")
        nat.append("KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" '
                                       '-j MASQUERADE --random-fully')
        nat.append("KUBE-SERVICES", '-m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                                    'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')

    def _service_rules(self, n: Node, svc: Service) -> None:
        nat: Table = n.iptables("nat")
        p, cid = svc.proto, svc.port_id
        nat.new_chain(svc.svc_chain)
        # Before the NodePorts rule, which must stay last.
        services = nat.chains["KUBE-SERVICES"].rules
        services.insert(len(services) - 1, parse_rule(
            f'-d {svc.cluster_ip}/32 -p {p} -m comment --comment "{cid} cluster IP" -m {p} --dport {svc.port} '
            f'-j {svc.svc_chain}'))
        nat.append(svc.svc_chain, f'! -s {self.cluster_cidr} -d {svc.cluster_ip}/32 -p {p} -m comment --comment '
                                  f'"{cid} cluster IP" -m {p} --dport {svc.port} -j KUBE-MARK-MASQ')
        for i, ip in enumerate(svc.endpoints):
            sep = svc.sep_chain(ip)
            left = len(svc.endpoints) - i
            stat = f"-m statistic --mode random --probability {probability(left)} " if left > 1 else ""
            nat.append(svc.svc_chain, f'-m comment --comment "{cid} -> {ip}:{svc.target_port}" {stat}-j {sep}')
            nat.new_chain(sep)
            # Hairpin: a pod reaching itself through the Service is masqueraded.
            nat.append(sep, f'-s {ip}/32 -m comment --comment "{cid}" -j KUBE-MARK-MASQ')
            nat.append(sep, f'-p {p} -m comment --comment "{cid}" -m {p} -j DNAT --to-destination {ip}:{svc.target_port}')
