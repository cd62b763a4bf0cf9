"""The CNI reference plugins (containernetworking/plugins v1.1.1, what Debian 12 ships) as
model steps: what `bridge`, `ptp` and `host-local` leave in the kernel after ADD, written
in the order the plugins write it (containernetworking/plugins v1.1.1; pkg/utils,
plugins/main/bridge/bridge.go, plugins/main/ptp/ptp.go, pkg/ip/ipmasq_linux.go).

tests/kernel/test_kernel_real_cni.py runs the real plugins beside these with the same network
config and compares links, addresses, routes, sysctls and iptables-save.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from nsbox.errors import ValidationError
from nsbox.model import Lab, Node


def chain_name(network: str, container_id: str, prefix: str = "") -> str:
    """utils.FormatChainName / MustFormatHashWithPrefix(28, "CNI-"+prefix, name+id):
    "CNI-" + sha512(name + id) in hex, cut to 28 characters."""
    head = "CNI-" + prefix
    return head + hashlib.sha512((network + container_id).encode()).hexdigest()[:28 - len(head)]


def comment(network: str, container_id: str) -> str:
    """utils.FormatComment: Go's fmt.Sprintf("name: %q id: %q"), as an iptables argument
    (the quotes escaped, as iptables-save prints them)."""
    return f'"name: \\"{network}\\" id: \\"{container_id}\\""'


def veth_name(container_id: str, ifname: str = "eth0") -> str:
    """ip.RandomVethName(): "veth" + 4 random bytes in hex. Random in the plugin; here a
    hash of the container, so a lab is the same every run."""
    return "veth" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:8]


def container_id(node: str, pod: str) -> str:
    """CNI_CONTAINERID: the pod sandbox's id (64 hex digits under containerd)."""
    return hashlib.sha256(f"{node}/{pod}".encode()).hexdigest()


@dataclass
class HostLocal:
    """host-local IPAM for one range: the gateway is network+1 and never handed out, the
    first pod gets .2, then .3, ... (allocation resumes after last_reserved_ip)."""

    subnet: str
    gateway: str = ""
    allocated: dict[str, str] = field(default_factory=dict)  # ip -> container id

    def __post_init__(self) -> None:
        net = ipaddress.IPv4Network(self.subnet)
        if net.prefixlen > 30:
            raise ValidationError(f"host-local: network {net} too small to allocate from")
        if not self.gateway:
            self.gateway = str(net.network_address + 1)

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def allocate(self, cid: str) -> str:
        net, gw = self.net, ipaddress.IPv4Address(self.gateway)
        start = max((ipaddress.IPv4Address(ip) for ip in self.allocated), default=net.network_address + 1)
        ip = start + 1
        while ip == gw or str(ip) in self.allocated:
            ip += 1
        if ip >= net.broadcast_address:  # rangeEnd: broadcast - 1
            raise ValidationError(f"host-local: no IP addresses available in range set {net}")
        self.allocated[str(ip)] = cid
        return str(ip)


@dataclass
class NetConf:
    """The plugin config fields these layouts use (a CNI network config)."""

    name: str
    type: str                    # bridge | ptp
    subnet: str                  # ipam.ranges[0][0].subnet
    bridge: str = "cni0"
    is_gateway: bool = True
    ip_masq: bool = False
    hairpin_mode: bool = True
    mtu: int | None = None
    routes: tuple[str, ...] = ("0.0.0.0/0",)  # ipam.routes, dst only (gw: the gateway)


def ip_masq(nat_node: Node, conf: NetConf, cid: str, pod_ip: str) -> str:
    """pkg/ip/ipmasq_linux.go SetupIPMasq: a CNI-<hash> chain per pod address, entered
    from POSTROUTING by its source; traffic to the IPAM subnet is left alone, everything
    but multicast is masqueraded. Returns the chain's name."""
    chain, c = chain_name(conf.name, cid), comment(conf.name, cid)
    nat = nat_node.iptables("nat")
    nat.new_chain(chain)
    nat.append(chain, f"-d {conf.subnet} -m comment --comment {c} -j ACCEPT")
    nat.append(chain, f"! -d 224.0.0.0/4 -m comment --comment {c} -j MASQUERADE")
    nat.append("POSTROUTING", f"-s {pod_ip}/32 -m comment --comment {c} -j {chain}")
    return chain


@dataclass
class Attachment:
    """What ADD returned: the pod's address, the host veth, the gateway."""

    pod: Node
    ip: str
    prefixlen: int
    gateway: str
    host_veth: str
    container_id: str
    masq_chain: str | None = None


def _veth(lab: Lab, node: Node, pod: Node, veth: str, conf: NetConf, master: str | None) -> None:
    """The veth pair, eth0 in the pod: both ends with txqueuelen 0, as the plugin makes them
    (its netlink.Veth carries TxQLen 0, sent as IFLA_TXQLEN; `ip link add` would leave 1000)."""
    lab.veth(pod, "eth0", node, veth, b_master=master, **({"mtu": conf.mtu} if conf.mtu else {}))
    pod.set_link("eth0", txqueuelen=0)
    node.set_link(veth, txqueuelen=0)


def _pod_sysctls(pod: Node) -> None:
    # In the container, for its interface: no DAD for IPv6 (it would delay the address),
    # gratuitous ARP when the address changes.
    pod.sysctl("net.ipv6.conf.eth0.accept_dad", 0, optional=True)
    pod.sysctl("net.ipv4.conf.eth0.arp_notify", 1)


def bridge_add(lab: Lab, node: Node, pod: Node, conf: NetConf, ipam: HostLocal, cid: str) -> Attachment:
    """`bridge` ADD with host-local: ensureBridge (cni0, accept_ra=0), the veth pair with the
    host end on the bridge (accept_ra=0, hairpin per hairpinMode), the pod's address with
    the IPAM prefix and its routes via the gateway, isGateway's address on the bridge and
    ip_forward, then ipMasq's chain."""
    if conf.bridge not in node.interfaces:
        node.bridge(conf.bridge, mtu=conf.mtu)
        node.sysctl(f"net.ipv6.conf.{conf.bridge}.accept_ra", 0, optional=True)
    veth = veth_name(cid)
    _veth(lab, node, pod, veth, conf, conf.bridge)
    node.sysctl(f"net.ipv6.conf.{veth}.accept_ra", 0, optional=True)
    node.set_link(veth, hairpin=conf.hairpin_mode)
    ip = ipam.allocate(cid)
    _pod_sysctls(pod)
    pod.address("eth0", f"{ip}/{ipam.net.prefixlen}")
    for dst in conf.routes:
        pod.route("default" if dst == "0.0.0.0/0" else dst, via=ipam.gateway, dev="eth0")
    if conf.is_gateway:
        gw_cidr = f"{ipam.gateway}/{ipam.net.prefixlen}"
        if all(a.cidr != gw_cidr for a in node.addresses_of(conf.bridge)):
            node.address(conf.bridge, gw_cidr)
        node.sysctl("net.ipv4.ip_forward", 1)
    chain = ip_masq(node, conf, cid, ip) if conf.ip_masq else None
    return Attachment(pod, ip, ipam.net.prefixlen, ipam.gateway, veth, cid, chain)


def ptp_add(lab: Lab, node: Node, pod: Node, conf: NetConf, ipam: HostLocal, cid: str) -> Attachment:
    """`ptp` ADD with host-local: ip_forward, the veth pair; in the pod the address with the
    IPAM prefix and its routes, then the kernel's prefix route deleted and replaced by
    `GW dev eth0 scope link src IP` and `SUBNET via GW dev eth0 src IP`; on the host veth
    the gateway as a /32 and `IP dev vethX scope host`; then ipMasq's chain."""
    ip = ipam.allocate(cid)
    node.sysctl("net.ipv4.ip_forward", 1)
    veth = veth_name(cid)
    _veth(lab, node, pod, veth, conf, None)
    net, gw = ipam.net, ipam.gateway
    # (ptp sets no arp_notify or accept_dad in the pod: seen in the real plugin 1.1.1)
    pod.address("eth0", f"{ip}/{net.prefixlen}")
    for dst in conf.routes:
        pod.route("default" if dst == "0.0.0.0/0" else dst, via=gw, dev="eth0")
    pod.delete_route(str(net), dev="eth0")
    pod.route(gw, dev="eth0", scope="link", src=ip)
    pod.route(str(net), via=gw, dev="eth0", src=ip)
    node.sysctl(f"net.ipv6.conf.{veth}.accept_ra", 0, optional=True)
    node.address(veth, f"{gw}/32")
    node.route(f"{ip}/32", dev=veth, scope="host")
    chain = ip_masq(node, conf, cid, ip) if conf.ip_masq else None
    return Attachment(pod, ip, net.prefixlen, gw, veth, cid, chain)


ADD = {"bridge": bridge_add, "ptp": ptp_add}


# -- portmap (plugins/meta/portmap v1.1.1, iptables backend; cni.md §5) --

MARK_MASQ_BIT = 13  # markMasqBit default: "Kubernetes uses 14 and 15, Calico uses 20-31"


@dataclass(frozen=True)
class PortMapping:
    """runtimeConfig.portMappings[]: a pod's hostPort."""

    host_port: int
    container_port: int
    protocol: str = "tcp"


def portmap_add(node: Node, conf: NetConf, att: Attachment, mappings: list[PortMapping], host_if: str) -> None:
    """`portmap` ADD chained after bridge/ptp, snat on (the default): the shared chains
    CNI-HOSTPORT-SETMARK, CNI-HOSTPORT-MASQ (its POSTROUTING entry inserted at the top, so
    the bridge/ptp ipMasq chains do not masquerade first), route_localnet=1 on HOST_IF (the
    interface the node routes the pod through: cni0, or ptp's host veth) and
    CNI-HOSTPORT-DNAT (entered from PREROUTING and OUTPUT for local destinations); then the
    pod's CNI-DN-<hash> with, per mapping, the hairpin and localhost marks and the DNAT.
    The shared chains are created once per node, as the plugin's insertUnique does."""
    for m in mappings:
        if m.protocol not in ("tcp", "udp") or not all(type(p) is int and 1 <= p <= 65535
                                                       for p in (m.host_port, m.container_port)):
            raise ValidationError(f"portmap: bad port mapping {m} (tcp/udp, ports 1-65535)")
    nat = node.iptables("nat")
    mark = f"{1 << MARK_MASQ_BIT:#x}/{1 << MARK_MASQ_BIT:#x}"
    if "CNI-HOSTPORT-SETMARK" not in nat.chains:
        nat.new_chain("CNI-HOSTPORT-SETMARK")
        nat.append("CNI-HOSTPORT-SETMARK", f'-m comment --comment "CNI portfwd masquerade mark" '
                                           f'-j MARK --set-xmark {mark}')
        nat.new_chain("CNI-HOSTPORT-MASQ")
        nat.append("CNI-HOSTPORT-MASQ", f"-m mark --mark {mark} -j MASQUERADE")
        nat.insert("POSTROUTING", '-m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ', 1)
    node.sysctl(f"net.ipv4.conf.{host_if}.route_localnet", 1)
    if "CNI-HOSTPORT-DNAT" not in nat.chains:
        nat.new_chain("CNI-HOSTPORT-DNAT")
        for entry in ("PREROUTING", "OUTPUT"):
            nat.append(entry, "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT")
    dn = chain_name(conf.name, att.container_id, "DN-")
    nat.new_chain(dn)
    subnet = str(ipaddress.ip_interface(f"{att.ip}/{att.prefixlen}").network)
    for m in mappings:
        base = f"-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
        nat.append(dn, f"-s {subnet} {base} -j CNI-HOSTPORT-SETMARK")       # hairpin
        nat.append(dn, f"-s 127.0.0.1/32 {base} -j CNI-HOSTPORT-SETMARK")   # localhost
        nat.append(dn, f"{base} -j DNAT --to-destination {att.ip}:{m.container_port}")
    dnat_comment = f'"dnat name: \\"{conf.name}\\" id: \\"{att.container_id}\\""'
    for proto in sorted({m.protocol for m in mappings}):
        ports = [m.host_port for m in mappings if m.protocol == proto]
        for i in range(0, len(ports), 15):  # multiport takes at most 15 ports
            nat.append("CNI-HOSTPORT-DNAT", f"-p {proto} -m comment --comment {dnat_comment} -m multiport "
                                            f"--dports {','.join(map(str, ports[i:i + 15]))} -j {dn}")


# -- calico (the Calico CNI plugin's Linux dataplane; written from Calico's documented layout,
#    not compared with a real Calico: none runs here) --

CALICO_GATEWAY = "169.254.1.1"    # the pods' gateway: an address nobody holds
CALICO_HOST_MAC = "ee:ee:ee:ee:ee:ee"  # every cali veth's host end


def calico_veth_name(namespace: str, pod: str) -> str:
    """Calico's host veth name: "cali" + the first 11 hex digits of sha1("<namespace>.<pod>")."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def calico_add(lab: Lab, node: Node, pod: Node, ip: str, namespace: str = "default") -> Attachment:
    """The calico CNI plugin's ADD: a veth pair, the host end `cali...` with MAC
    ee:ee:ee:ee:ee:ee and no address, proxy ARP on it (proxy_delay 0) so it answers for
    169.254.1.1, forwarding, route_localnet; in the pod the address as a /32, `169.254.1.1
    dev eth0 scope link` and `default via 169.254.1.1 dev eth0`; on the node `IP dev cali...
    scope link`. IP is calico-ipam's choice (from the node's block)."""
    veth = calico_veth_name(namespace, pod.name)
    lab.veth(pod, "eth0", node, veth)
    node.set_link(veth, mac=CALICO_HOST_MAC)
    for key, value in (("proxy_arp", 1), ("forwarding", 1), ("route_localnet", 1)):
        node.sysctl(f"net.ipv4.conf.{veth}.{key}", value)
    node.sysctl(f"net.ipv4.neigh.{veth}.proxy_delay", 0)
    node.sysctl(f"net.ipv6.conf.{veth}.accept_ra", 0, optional=True)
    pod.address("eth0", f"{ip}/32")
    pod.route(CALICO_GATEWAY, dev="eth0", scope="link")
    pod.route("default", via=CALICO_GATEWAY, dev="eth0")
    node.route(f"{ip}/32", dev=veth, scope="link")
    return Attachment(pod, ip, 32, CALICO_GATEWAY, veth, container_id(node.name, pod.name))
