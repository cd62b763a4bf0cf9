"""A small Kubernetes kit: nodes on a node network, pods attached by a CNI layout, and
Services as kube-proxy (nsbox.kits.kubeproxy, mode=iptables|nftables) writes them.

    k = Cluster(lab, cni="bridge")               # or cni="ptp" (kindnet, as every kind cluster)
    n1 = k.node("node1", "10.244.1.0/24")        # a machine: eth0 on the node network
    p1 = k.pod(n1, "p1")                          # netns, attached as the CNI plugin attaches it
    svc = k.service("web", [Port(80, 8080)], pods=[p1, p2])   # kube-proxy's rules on every node

Layouts (nsbox/kits/k8s/cni.py writes what the real plugins write, checked against them):
- cni="bridge": flannel's host-gw backend. The flannel CNI plugin delegates to `bridge`
  (network "cbr0": cni0, isGateway, isDefaultGateway, hairpinMode, ipMasq false) with
  host-local on the node's pod CIDR and the route to the cluster CIDR; flanneld --ip-masq
  writes FLANNEL-POSTRTG / FLANNEL-FWD. masq="cni" instead turns on the bridge plugin's own
  ipMasq (its CNI-<hash> chains), which also masquerades pods of other nodes: the plugin
  exempts only its own subnet.
- cni="vxlan": flannel's default vxlan backend: the same bridge delegate (MTU 1450), and
  flannel.1 (VNI 1, UDP 8472, nolearning) with a permanent neighbour and FDB entry and an
  onlink route per other node, instead of host-gw routes.
- cni="calico": Calico's BGP layout: pods with a /32, gateway 169.254.1.1 (nobody's
  address: the node's `cali...` veth, MAC ee:ee:ee:ee:ee:ee, answers by proxy ARP), a /32
  route per pod on the node, the node's block blackholed, the peers' blocks via their
  addresses (proto bird, as BGP would have taught them), Felix's natOutgoing (by its ipsets of the IPAM pools).
- cni="ptp": kindnet. `ptp` (network "kindnet", ipMasq false, mtu of eth0) with host-local
  and a default route; the gateway /32 on every host veth; kindnetd's KIND-MASQ-AGENT.
Pods on other nodes are reached through routes to their pod CIDRs via the node's address
on the node network (host-gw / kindnet routes.go). bridge-nf-call-iptables=1 on bridge
nodes (br_netfilter, which kube-proxy needs for bridged pod->Service->same-node traffic).
Services (services.py): every change is one kube-proxy sync on every node, rendered by
nsbox.kits.kubeproxy (the port of kube-proxy's syncProxyRules) and installed as kube-proxy
installs it; the Service's addresses are `lab.virtual`, so a probe may target them and
`answered_by=` proves which endpoint served.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from nsbox.errors import ValidationError
from nsbox.kits.k8s import cni as plugins
from nsbox.model import Lab, Node

LAN_SUBNET = "192.168.70.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
MASQ_MARK = "0x4000/0x4000"
LAYOUTS = ("bridge", "ptp", "vxlan", "calico")
PROXY_MODES = ("iptables", "nftables")
VXLAN_MTU = 1450      # flanneld: the external interface's MTU (1500) - 50
VXLAN_PORT = 8472     # flannel sets no port: the kernel's default, 8472
# Who masquerades pod traffic leaving the cluster: "flannel" (flanneld --ip-masq), "cni" (the
# bridge plugin's ipMasq), "kind" (kindnetd's masq agent) or "none" (the kit's default for
# bridge, as before the layouts: kube-proxy's rules only).
MASQ = ("none", "flannel", "cni", "kind", "calico")
OUTSIDE_HOST = 200  # the "outside" machine's host number on the node network
# Felix's IPAM pool sets (ipsets named cali40 + the set's id: "4" IPv4, "0" the version)
CALI_ALL_POOLS = "cali40all-ipam-pools"
CALI_MASQ_POOLS = "cali40masq-ipam-pools"


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
    ip6: str = ""        # dual-stack: its IPv6 address on the node network
    pod_cidr6: str = ""  # dual-stack: its IPv6 pod CIDR
    ipam: plugins.HostLocal | None = None
    attachments: dict[str, plugins.Attachment] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.pod_cidr).network_address + 1)


class Cluster:
    """A cluster: its LAN (a switch node with bridge br0), nodes, pods and Services."""

    def __init__(self, lab: Lab, *, cluster_cidr: str = CLUSTER_CIDR, service_cidr: str = SERVICE_CIDR,
                 lan_subnet: str = LAN_SUBNET, switch: str = "k8s-lan", cni: str = "bridge",
                 masq: str | None = None, mode: str = "iptables", dual_stack: bool = False) -> None:
        if mode not in PROXY_MODES:
            raise ValidationError(f"k8s: mode (kube-proxy's) must be one of {', '.join(PROXY_MODES)}, not {mode!r}")
        if cni not in LAYOUTS:
            raise ValidationError(f"k8s: cni must be one of {', '.join(LAYOUTS)}, not {cni!r}")
        masq = masq or {"ptp": "kind", "vxlan": "flannel", "calico": "calico"}.get(cni, "none")
        allowed = {"ptp": ("kind", "none"), "vxlan": ("flannel", "none"),
                   "calico": ("calico", "none")}.get(cni, ("none", "flannel", "cni"))
        if masq not in allowed:
            raise ValidationError(f"k8s: with cni={cni} masq is one of {', '.join(allowed)}, not {masq!r}")
        if dual_stack not in (True, False):
            raise ValidationError(f"k8s: dual_stack is true or false, not {dual_stack!r}")
        if dual_stack and cni != "bridge":
            raise ValidationError(f"k8s: dual_stack is built for cni=bridge (flannel host-gw), not cni={cni}")
        self.lab = lab
        self.cni = cni
        self.dual_stack = dual_stack
        from nsbox.kits.k8s import dualstack
        self.cluster_cidr6 = dualstack.CLUSTER_CIDR6
        self.service_cidr6 = dualstack.SERVICE_CIDR6
        self.lan6 = dualstack.LAN_SUBNET6
        self.router_ip6 = str(ipaddress.IPv6Network(self.lan6).network_address + 1)
        self.pod_ip6: dict[str, str] = {}  # dual-stack: pod name -> its IPv6 address
        self.masq = masq
        self.cluster_cidr = str(ipaddress.IPv4Network(cluster_cidr))
        self.service_net = ipaddress.IPv4Network(service_cidr)
        self.lan = ipaddress.IPv4Network(lan_subnet)
        self.nodes: dict[str, K8sNode] = {}
        self.services: list[Any] = []  # services.ServiceHandle, in creation order
        self.mode = mode
        self.labels: dict[str, dict[str, str]] = {}  # pod name -> its labels
        self.namespaces: dict[str, str] = {}  # pod name -> its namespace
        self.hostnames: dict[str, tuple[str, str]] = {}  # pod name -> (spec.hostname, spec.subdomain)
        self.dns: Any = None  # dns.ClusterDNS once cluster_dns() made it
        self._next_node_port = 30000
        self._kube_proxy: dict[str, Any] = {}  # node name -> what its kube-proxy installed
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
        if dual_stack:
            lab.require("ipv6")
            self.switch.address("br0", f"{self.router_ip6}/64")

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
        kn = K8sNode(name, n, ip, str(cidr), ipam=plugins.HostLocal(str(cidr)))
        n.sysctl("net.ipv4.ip_forward", 1)
        if self.cni in ("bridge", "vxlan"):
            # The bridge exists before the first pod here (the plugin makes it at the first ADD).
            n.bridge("cni0", f"{kn.gateway}/{cidr.prefixlen}", mtu=VXLAN_MTU if self.cni == "vxlan" else None)
            n.sysctl("net.ipv6.conf.cni0.accept_ra", 0, optional=True)
            n.sysctl("net.bridge.bridge-nf-call-iptables", 1, optional=True)
        if self.cni == "vxlan":
            self._flannel_vxlan(kn)
        elif self.cni == "calico":
            # The node's IPAM block (its pod CIDR here) is a blackhole on the node itself (its
            # pods' /32 routes are more specific); the peers learn it by BGP (BIRD): routes via
            # the node's address, proto bird, both ways.
            n.route(kn.pod_cidr, type="blackhole", proto="bird")
            for other in self.nodes.values():
                n.route(other.pod_cidr, via=other.ip, dev="eth0", proto="bird")
                other.node.route(kn.pod_cidr, via=ip, dev="eth0", proto="bird")
        else:
            # Pod CIDRs of the other nodes, via their LAN address (both ways).
            for other in self.nodes.values():
                n.route(other.pod_cidr, via=other.ip)
                other.node.route(kn.pod_cidr, via=ip)
        if self.dual_stack:
            from nsbox.kits.k8s import dualstack
            dualstack.add_node(self, kn, len(self.nodes))
        self.nodes[name] = kn
        self._masquerade(kn)
        self.lab.machine(name, [n])
        for svc in self.services:  # NodePorts answer on every node's address, this one's too
            for p in svc.ports if svc.api.type in ("NodePort", "LoadBalancer") else ():
                self.lab.virtual(ip, proto=p.l4, port=p.node_port, name=f"service {svc.namespace}/{svc.name} "
                                                                          f"nodePort on {name}")
        self._sync_services()
        return kn

    def _flannel_vxlan(self, kn: K8sNode) -> None:
        """flanneld's vxlan backend on node KN (cni.md §6): flannel.1 (VNI 1, the kernel's
        port 8472, nolearning, local = the node's address on eth0, MTU 1450, a fixed MAC
        where flanneld picks a random one), the lease's network address as a /32 on it; then
        for every other node's lease, both ways: `ip neigh replace GW0 lladdr MAC dev
        flannel.1 nud permanent`, `bridge fdb replace MAC dev flannel.1 dst NODEIP self
        permanent`, `ip route replace LEASE via GW0 dev flannel.1 onlink`."""
        n = kn.node
        self.lab.vxlan(n, "flannel.1", vni=1, port=VXLAN_PORT, local=kn.ip, dev="eth0", learning=False)
        n.set_link("flannel.1", mtu=VXLAN_MTU, mac=self.vtep_mac(kn))
        n.address("flannel.1", f"{ipaddress.IPv4Network(kn.pod_cidr).network_address}/32")
        n.sysctl("net.ipv6.conf.flannel/1.accept_ra", 0, optional=True)
        for other in self.nodes.values():
            for a, b in ((kn, other), (other, kn)):
                vtep = str(ipaddress.IPv4Network(b.pod_cidr).network_address)
                a.node.neigh("flannel.1", vtep, self.vtep_mac(b), state="permanent")
                a.node.fdb("flannel.1", self.vtep_mac(b), master=False, state="permanent", dst=b.ip)
                a.node.route(b.pod_cidr, via=vtep, dev="flannel.1", onlink=True)

    @staticmethod
    def vtep_mac(kn: K8sNode) -> str:
        """flannel.1's MAC: random in flanneld (persisted in the node's annotations); here
        locally administered and derived from the node's name, so a lab is the same every run."""
        h = hashlib.sha256(kn.name.encode()).digest()
        return "0e:" + ":".join(f"{b:02x}" for b in h[:5])

    def conf(self, kn: K8sNode) -> plugins.NetConf:
        """The node's CNI network config (what /etc/cni/net.d holds, as the plugin reads it)."""
        if self.cni == "ptp":
            # kindnetd's 10-kindnet.conflist: ptp, ipMasq false, a default route, eth0's MTU.
            return plugins.NetConf("kindnet", "ptp", kn.pod_cidr, ip_masq=False, mtu=1500,
                                   routes=("0.0.0.0/0",))
        # flannel's delegate: bridge cni0, isGateway, isDefaultGateway (the default route
        # after IPAM's route to the cluster), hairpinMode, ipMasq = !FLANNEL_IPMASQ.
        return plugins.NetConf("cbr0", "bridge", kn.pod_cidr, ip_masq=self.masq == "cni", hairpin_mode=True,
                               routes=(self.cluster_cidr, "0.0.0.0/0"),
                               mtu=VXLAN_MTU if self.cni == "vxlan" else None)

    def pod(self, node: K8sNode | str, name: str, *, host_ports: list[tuple[int, int]] | None = None,
            labels: dict[str, str] | None = None, namespace: str = "default", hostname: str = "",
            subdomain: str = "") -> Node:
        """A pod NAME on NODE: its netns with eth0 attached by the cluster's CNI layout
        (cni.py: bridge or ptp ADD, host-local's next address); HOST_PORTS [(hostPort,
        containerPort)] (tcp) by portmap, chained after it as in kindnet's and flannel's
        conflists. NAMESPACE: the Services that may select it and its DNS search list;
        HOSTNAME and SUBDOMAIN (spec.hostname/subdomain, as a StatefulSet sets them): its
        name under the headless Service SUBDOMAIN in the cluster DNS."""
        import re

        for what, v in (("namespace", namespace), ("hostname", hostname or "x"), ("subdomain", subdomain or "x")):
            if not (isinstance(v, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v)):
                raise ValidationError(f"k8s pod {name}: {what} is a DNS label (a-z, 0-9, '-'), not {v!r}")
        kn = node if isinstance(node, K8sNode) else self.nodes[node]
        p = self.lab.node(name)
        self.lab.sandbox(p)  # held by a pause process while the lab runs
        cid = plugins.container_id(kn.name, name)
        assert kn.ipam is not None
        conf = self.conf(kn)
        try:
            if self.cni == "calico":
                att = plugins.calico_add(self.lab, kn.node, p, kn.ipam.allocate(cid))
            else:
                att = plugins.ADD[conf.type](self.lab, kn.node, p, conf, kn.ipam, cid)
        except ValidationError as e:
            raise ValidationError(f"k8s node {kn.name}: pod {name}: {e}") from None
        if host_ports:
            cni_if = "cni0" if conf.type == "bridge" and self.cni != "calico" else att.host_veth
            plugins.portmap_add(kn.node, conf, att, [plugins.PortMapping(h, c) for h, c in host_ports], cni_if)
        kn.pods.append(p)
        kn.attachments[name] = att
        self._pod_of[name] = (kn, att.ip)
        if self.dual_stack:
            from nsbox.kits.k8s import dualstack
            self.pod_ip6[name] = dualstack.add_pod(self, kn, name, att.ip)
        self.labels[name] = dict(labels or {})
        self.namespaces[name] = namespace
        if hostname:
            self.hostnames[name] = (hostname, subdomain)
        self.lab.place(kn.name, p)  # the node's machine holds its pods' namespaces too
        self._sync_services()
        return p

    def container(self, pod: Node | str, name: str):
        """A container NAME of POD: it shares the pod's netns (held by the pod sandbox, as
        pause holds it), so its interfaces, address and 127.0.0.1; its own servers."""
        return self.lab.container(name, pod)

    def host_network_pod(self, node: K8sNode | str, name: str) -> Any:
        """A hostNetwork pod NAME on NODE (`spec.hostNetwork: true`: kube-proxy, a CNI agent,
        node-exporter): the kubelet runs no CNI ADD for it; its sandbox (pause) and its
        container live in the node's own netns, so it has the node's interfaces, addresses
        and routes, and its servers answer on the node's address. Returns the container
        (`.serve(kind, port)`); the node's netns is held by a pause process while the lab runs."""
        kn = node if isinstance(node, K8sNode) else self.nodes[node]
        self.lab.sandbox(kn.node)
        c = self.lab.container(name, kn.node)
        self._pod_of[name] = (kn, kn.ip)
        self.labels.setdefault(name, {})
        return c

    def namespace_of(self, pod: Node | str) -> str:
        return self.namespaces.get(pod if isinstance(pod, str) else pod.name, "default")

    def cluster_dns(self, node: K8sNode | str, **options: Any) -> Any:
        """The cluster DNS (CoreDNS's kubernetes plugin, as kubeadm deploys it): a coredns
        pod on NODE behind the kube-dns Service (10.96.0.10), answering for every Service and
        pod of the cluster; every pod's /etc/resolv.conf as kubelet writes it. See dns.py."""
        from nsbox.kits.k8s.dns import ClusterDNS
        if self.dns is not None:
            raise ValidationError("k8s: the cluster has its DNS already")
        self.dns = ClusterDNS(self, node, **options)
        return self.dns

    def pod_ip(self, pod: Node | str) -> str:
        return self._pod_of[pod if isinstance(pod, str) else pod.name][1]

    def outside(self, name: str = "outside", host: int = OUTSIDE_HOST) -> Node:
        """A machine on the node network that is no node: no routes to the pod CIDRs, so a
        pod reaches it only masqueraded to its node's address. HOST: its host number on
        the node network (.200 by default; several outside machines need distinct ones)."""
        if not (type(host) is int and 100 <= host < self.lan.num_addresses - 1):
            raise ValidationError(f"k8s outside {name}: host number {host!r} out of 100-{self.lan.num_addresses - 2}")
        n = self.lab.node(name)
        self.lab.veth(n, "eth0", self.switch, f"p-{name}"[:15], b_master="br0")
        n.address("eth0", f"{self.lan.network_address + host}/{self.lan.prefixlen}")
        n.route("default", via=self.router_ip)
        self.lab.machine(name, [n])
        return n

    def l2_announce(self, node: K8sNode | str, ip: str) -> None:
        """MetalLB's layer-2 mode: NODE (the elected speaker) answers ARP for IP on its
        eth0, the others stay silent. The speaker answers from user space; here the
        kernel does it for the node: a proxy neighbour entry (`ip neigh add proxy IP dev
        eth0`), proxy_delay 0 (answer at once, as the speaker does, not after up to
        0.8 s), and a /32 route for IP out of `mlb0` (the kernel answers a proxy entry only for
        an address routed out of another device than the one asking; kube-proxy's DNAT
        in PREROUTING comes before that route is ever used). mlb0 is one end of a veth
        pair inside the node (mlb0p the other; nobody answers ARP there, so what is not
        DNAT'ed dies): a dummy device would do, but not every kernel has one."""
        kn = node if isinstance(node, K8sNode) else self.nodes[node]
        if ipaddress.ip_address(ip) not in self.lan:
            raise ValidationError(f"k8s l2_announce {ip}: not on the node network {self.lan}")
        if "mlb0" not in kn.node.interfaces:
            self.lab.veth(kn.node, "mlb0", kn.node, "mlb0p")
        kn.node.route(f"{ip}/32", dev="mlb0")
        kn.node.neigh("eth0", ip, proxy=True)
        kn.node.sysctl("net.ipv4.neigh.eth0.proxy_delay", 0)

    @property
    def outside_ip(self) -> str:
        return str(self.lan.network_address + OUTSIDE_HOST)

    # ---------------------------------------------------------------- masquerade

    def _masquerade(self, kn: K8sNode) -> None:
        """The node's masquerade for traffic leaving the cluster: flanneld --ip-masq's
        FLANNEL-POSTRTG (bridge), kindnetd's KIND-MASQ-AGENT (ptp). masq="cni": none here,
        the bridge plugin's ipMasq chains per pod."""
        nat, cluster, lease = kn.node.iptables("nat"), self.cluster_cidr, kn.pod_cidr
        if self.masq == "kind":
            c = "kind-masq-agent: "
            nat.new_chain("KIND-MASQ-AGENT")
            nat.append("POSTROUTING", f'-m addrtype ! --dst-type LOCAL -m comment --comment "{c}ensure nat '
                                      f'POSTROUTING directs all non-LOCAL destination traffic to our custom '
                                      f'KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT')
            nat.append("KIND-MASQ-AGENT", f'-d {cluster} -m comment --comment "{c}local traffic is not subject '
                                          f'to MASQUERADE" -j RETURN')
            nat.append("KIND-MASQ-AGENT", f'-m comment --comment "{c}outbound traffic is subject to MASQUERADE '
                                          f'(must be last in chain)" -j MASQUERADE')
            return
        if self.masq == "calico":
            # Felix's natOutgoing for the pool: cali-POSTROUTING -> cali-nat-outgoing, matching
            # the pools by Felix's ipsets (hash:net): cali40masq-ipam-pools (pools with
            # natOutgoing) as the source, not cali40all-ipam-pools (every pool) as the destination.
            self.lab.require("ipset")
            kn.node.ipset(CALI_ALL_POOLS, "hash:net", [cluster])
            kn.node.ipset(CALI_MASQ_POOLS, "hash:net", [cluster])
            nat.new_chain("cali-POSTROUTING")
            nat.new_chain("cali-nat-outgoing")
            nat.insert("POSTROUTING", '-m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING', 1)
            nat.append("cali-POSTROUTING", '-m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-nat-outgoing')
            nat.append("cali-nat-outgoing", f'-m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set '
                                            f'{CALI_MASQ_POOLS} src -m set ! --match-set {CALI_ALL_POOLS} dst '
                                            f'-j MASQUERADE --random-fully')
            return
        if self.masq != "flannel":
            return
        m = '-m comment --comment "flanneld masq"'
        nat.new_chain("FLANNEL-POSTRTG")
        nat.append("POSTROUTING", f"{m} -j FLANNEL-POSTRTG")
        for rule in (f"-m mark --mark {MASQ_MARK} {m} -j RETURN",
                     f"-s {lease} -d {cluster} {m} -j RETURN",
                     f"-s {cluster} -d {lease} {m} -j RETURN",
                     f"! -s {cluster} -d {lease} {m} -j RETURN",
                     f"-s {cluster} ! -d 224.0.0.0/4 {m} -j MASQUERADE --random-fully",
                     f"! -s {cluster} -d {cluster} {m} -j MASQUERADE --random-fully"):
            nat.append("FLANNEL-POSTRTG", rule)
        filt, f = kn.node.iptables("filter"), '-m comment --comment "flanneld forward"'
        filt.new_chain("FLANNEL-FWD")
        filt.append("FORWARD", f"{f} -j FLANNEL-FWD")
        filt.append("FLANNEL-FWD", f"-s {cluster} {f} -j ACCEPT")
        filt.append("FLANNEL-FWD", f"-d {cluster} {f} -j ACCEPT")

    # ---------------------------------------------------------------- Services

    def service(self, name: str, ports: Any, **options: Any) -> Any:
        """A Service NAME with PORTS, rendered on every node by kube-proxy's Proxier
        (nsbox/kits/k8s/services.py: options, EndpointSlices, installation)."""
        from nsbox.kits.k8s.services import add_service
        return add_service(self, name, ports, **options)

    def _allocate_node_port(self) -> int:
        taken = {p.node_port for s in self.services for p in s.ports}
        while self._next_node_port in taken:
            self._next_node_port += 1
        self._next_node_port += 1
        return self._next_node_port - 1

    def _sync_services(self) -> None:
        """kube-proxy's sync on every node (after a node, pod or Service changed). It runs
        on every node of a cluster, Services or not: its base chains are always there."""
        from nsbox.kits.k8s.services import sync_all
        sync_all(self)
