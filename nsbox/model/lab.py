"""The lab as plain data: nodes (network namespaces), interfaces, veth pairs,
bridges, addresses, routes, sysctls, firewalls, servers and expectations.

Nothing here touches the kernel. A recipe builds a `Lab` with the builder
methods below, each one the equivalent of a line you could type by hand.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from nsbox.errors import ValidationError
from nsbox.kinds import protocols
from nsbox.kinds import links as _link_kinds
from nsbox.model.checks import BindCheck, Check, InterfacesCheck, ConntrackCheck, LinkCheck, ReachCheck
from nsbox.model.firewall import Firewall, Table
from nsbox.model.ipsets import IPSet
from nsbox.model.matrix import Expected, Matrix, expected_of

HOST = "host"  # the node that plays the Docker host / Kubernetes machine

# Probe protocols and their servers are registered modules (nsbox/kinds/protocols/):
# these are derived from the registry, never kept by hand.
ServerKind = str  # a protocol with a server: protocols.server_kinds()
SERVER_KINDS = protocols.server_kinds()
# which server kinds answer a probe of each protocol
ANSWERS = {name: protocols.get(name).answers for name in protocols.names()}

# Kernel features a recipe may require (lab.require); each is probed for real
# (host/features.py). Derived: every registered link kind is one (a new kind needs no
# line here), plus those no link kind of nsbox stands for; the firewall kinds'
# features (nat: iptables, nftables: nft) are among them, and so is every protocol the
# kernel may lack (sctp), named after it and probed by its module.
_OTHER_FEATURES = ("geneve", "wireguard", "nat", "conntrack", "ipv6", "nftables", "vlan_filtering", "ipset")
FEATURES = tuple(dict.fromkeys(("veth", "bridge", *_link_kinds.KINDS, *_OTHER_FEATURES, *protocols.features())))


@dataclass
class Interface:
    name: str
    kind: str  # "veth", "bridge", "lo", or a kind of nsbox.kinds.links
    master: str | None = None  # bridge this port is enslaved to
    mtu: int | None = None
    # Link options (nsbox/model/linkopts.py validates them; None = the kernel's default).
    mac: str | None = None          # fixed MAC, set at creation (`address MAC`)
    txqueuelen: int | None = None
    up: bool = True                 # admin state: False leaves it down (`lo` included)
    stp: bool | None = None         # bridges: stp_state
    vlan_filtering: bool | None = None  # bridges
    hairpin: bool | None = None     # bridge ports: send frames back out the port they came in on
    isolated: bool | None = None    # bridge ports: no traffic to other isolated ports



@functools.lru_cache(maxsize=65536)
def _interface(cidr: str) -> tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDR's address and network, parsed once: target() asks every node's addresses for
    each probe (~10,000 parses in `nsbox run --all`). Networks are immutable."""
    iface = ipaddress.ip_interface(cidr)
    return str(iface.ip), iface.network

@dataclass(frozen=True)
class Address:
    iface: str
    cidr: str  # e.g. "172.17.0.2/16"
    # IPv6 only: run duplicate address detection. Off by default (`ip addr add ... nodad`,
    # IFA_F_NODAD), as moby's libnetwork adds container and bridge IPv6 addresses: a
    # tentative address cannot be used for about a second. With DAD on, realize waits.
    dad: bool = False
    # An anycast or virtual IP held on purpose by several nodes of one L2 segment (VRRP,
    # a Service VIP on every node): validation then allows the duplicate. Probes from a
    # node that holds it are still never answered by that node itself (the verifier fails them).
    shared: bool = False
    # `ip addr add ... noprefixroute` (IFA_F_NOPREFIXROUTE): the kernel adds no prefix
    # route for it. The CNI ptp plugin ends up with exactly this in a pod (it deletes the
    # kernel's prefix route and routes the subnet via the gateway instead).
    noprefixroute: bool = False

    @property
    def nodad(self) -> bool:
        return not self.dad and ":" in self.cidr

    @property
    def ip(self) -> str:
        return _interface(self.cidr)[0]

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return _interface(self.cidr)[1]


@dataclass(frozen=True)
class Route:
    """`ip route add DST [via VIA] [dev DEV] [src SRC] [scope S] [onlink] [metric M] [table T] [proto P]`.

    Unset fields are left to the kernel, as `ip` leaves them: scope link for a
    route without a gateway, universe with one; metric 0 (IPv4) or 1024 (IPv6);
    table main; proto boot. Encoded by nsbox/wire/routing.py."""

    dst: str  # "default" or a CIDR
    via: str | None = None
    dev: str | None = None
    src: str | None = None      # preferred source address: an address of this node
    scope: str | None = None    # global, site, link, host or 0-255
    onlink: bool = False        # the gateway is on DEV's link, whatever the subnets say
    metric: int | None = None
    table: str | None = None    # main, local, default or 1-4294967295
    proto: str | None = None    # boot, static, kernel, dhcp, ... or 0-255
    # None: a unicast route; "blackhole", "unreachable" or "prohibit": `ip route add TYPE DST`,
    # a route that drops (silently, or with ICMP host unreachable / admin prohibited).
    type: str | None = None
    # `ip route del DST [dev DEV] [table T]`: take away a route the kernel made (the prefix
    # route of an address), as the CNI ptp plugin does in a pod. Node.delete_route writes it.
    delete: bool = False


@dataclass(frozen=True)
class PolicyRule:
    """`ip rule add [pref N] [not] [from SRC] [to DST] [iif IF] [oif IF] [fwmark M[/MASK]] table T`."""

    table: str
    priority: int | None = None  # unset: the kernel picks one just below the first rule
    src: str | None = None       # "from"
    dst: str | None = None       # "to"
    iif: str | None = None       # an interface name; need not exist (the rule waits for it)
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    invert: bool = False         # "not"


@dataclass(frozen=True)
class Neigh:
    """`ip neigh add IP [lladdr MAC] dev DEV nud STATE`, or `ip neigh add proxy IP dev DEV`."""

    dev: str
    ip: str
    lladdr: str | None = None
    state: str = "permanent"  # permanent, noarp, reachable, stale
    proxy: bool = False


@dataclass(frozen=True)
class Fdb:
    """`bridge fdb add MAC dev DEV [master|self] [static|permanent|dynamic] [dst IP] [vlan N]`."""

    dev: str
    mac: str
    master: bool = True          # the bridge's table (dev is a port), else the device's own (self)
    state: str = "static"        # static, permanent, dynamic
    dst: str | None = None       # remote endpoint (vxlan)
    vlan: int | None = None


@dataclass(frozen=True)
class Server:
    """A server the verifier starts inside the node.

    http: GET / -> Hello, /host -> NODE: <node>, POD IP:<ip>, /source -> client ip:port.
    tcp / udp: echo. Every server records the peer address of each connection.
    """

    kind: ServerKind
    port: int
    container: str | None = None  # the container serving it; None: the one named after the node
    address: str | None = None    # the address it binds; None: the wildcard (0.0.0.0 / ::)
    records: tuple[tuple[str, str], ...] = ()  # dns: (name, IPv4 address) A records it answers

    @property
    def l4(self) -> str:
        return protocols.transport_of(self.kind) or "tcp"


@dataclass(frozen=True)
class Resolver:
    """The node's /etc/resolv.conf, in its own mount namespace wherever the lab gives nodes
    one (live labs: nsbox/live/node.py), as kubelet (or a container runtime) writes it:
    `nameserver` lines, one `search` line, one `options` line."""

    nameservers: tuple[str, ...]
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        lines += [f"options {' '.join(self.options)}"] if self.options else []
        return "# written by nsbox: the node's resolver\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Proxy:
    """A userland proxy process in the node (docker-proxy): listens on HOST_IP:HOST_PORT and
    relays each connection to CONTAINER_IP:CONTAINER_PORT (nsbox/verify/proxy.py)."""

    proto: Literal["tcp", "udp"]
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    name: str = "docker-proxy"
    # dockerd's embedded DNS resolver instead of a relay (nsbox/verify/proxy.py): answers
    # from the DNS server at HOST_IP:DNS_LOCAL, forwards the rest to CONTAINER_IP:PORT.
    dns_local: int | None = None
    dns_servfail: bool = False
    # UDP replies from the address the route picks, not the one the client wrote to (the
    # docker-proxy of Docker <= 27, before moby 6c6174b3)
    udp_reply_from_route: bool = False


@dataclass(frozen=True)
class Container:
    """A named process group in a node's netns (`docker run --network container:c1`, a pod's
    containers). Several containers share one netns: same interfaces and addresses, each with
    its own servers, and its own name in answered_by."""

    name: str
    node: str


@dataclass(frozen=True)
class Machine:
    """A machine (a Docker host, a Kubernetes node, a LAN router) and the namespaces it holds."""

    name: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Virtual:
    """An address, or one port of an address, that rules answer for and no interface or
    server owns: a Service ClusterIP (`lab.virtual("10.96.0.10")`), a published host port
    (`lab.virtual(UPLINK, proto="tcp", port=8080)`), a port DNAT'ed on a node's loopback."""

    ip: str
    proto: str | None = None   # a transport ("tcp", "udp", "sctp"): only this protocol and port are virtual
    port: int | None = None
    node: str | None = None    # the node whose rules answer (its own address or loopback)
    name: str | None = None    # what reports call it ("service web")

    def covers(self, ip: str, l4: str | None, port: int | None, node: str | None) -> bool:
        if ipaddress.ip_address(ip) != ipaddress.ip_address(self.ip):
            return False
        if self.node is not None and node is not None and node != self.node:
            return False
        if self.port is None:
            return True
        return (l4, port) == (self.proto, self.port)

    @property
    def label(self) -> str:
        where = f"{self.ip}:{self.port}/{self.proto}" if self.port else self.ip
        return self.name or f"virtual {where}"


@dataclass(frozen=True)
class Target:
    """Where a probe goes: the address, and the namespace that owns it (None for a virtual
    address no namespace owns), as a check resolves its dst."""

    ip: str
    node: Node | None
    label: str             # the name reports give the destination
    loopback: bool = False


@dataclass
class Node:
    """One network namespace. The node named `host` plays the container host."""

    name: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    rules: list[PolicyRule] = field(default_factory=list)
    neighs: list[Neigh] = field(default_factory=list)
    fdbs: list[Fdb] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    optional_sysctls: set[str] = field(default_factory=set)  # skipped where the kernel lacks them
    firewall: Firewall = field(default_factory=Firewall)
    ipsets: dict[str, IPSet] = field(default_factory=dict)  # name -> set (model/ipsets.py)
    servers: list[Server] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    resolver: Resolver | None = None  # its /etc/resolv.conf (None: what nsbox/live/holder.py picks)

    def __post_init__(self) -> None:
        self.interfaces.setdefault("lo", Interface("lo", "lo"))

    # -- builder steps, each one line of `ip` / `sysctl` / `iptables` --
    def bridge(self, name: str, address: str | None = None, mtu: int | None = None, *,
               mac: str | None = None, txqueuelen: int | None = None, stp: bool | None = None,
               vlan_filtering: bool | None = None, up: bool = True) -> Node:
        """`ip link add NAME [address MAC] type bridge [stp_state 1] [vlan_filtering 1];
        ip addr add ADDRESS dev NAME; ip link set NAME up`"""
        iface = Interface(name, "bridge", mtu=mtu, mac=mac, txqueuelen=txqueuelen, stp=stp,
                          vlan_filtering=vlan_filtering, up=up)
        self._new_iface(iface)
        if (mac, txqueuelen, stp, vlan_filtering, up) != (None, None, None, None, True):
            from nsbox.model import linkopts
            linkopts.check(self.name, iface)  # else validate() checks the MTU, as it always did
        if address:
            self.address(name, address)
        return self

    def set_link(self, iface: str, *, mac: str | None = None, mtu: int | None = None,
                 txqueuelen: int | None = None, up: bool | None = None,
                 hairpin: bool | None = None, isolated: bool | None = None) -> Node:
        """Options of an interface declared already (`lo` included), as `ip link` sets them:
        mac, mtu, txqueuelen at creation; up=False leaves it down (a veth whose peer is
        down shows NO-CARRIER; its state is LOWERLAYERDOWN when both ends share a netns,
        DOWN when the peer is in another one -- the kernel looks the peer's ifindex up in
        the veth's own netns, so there a down device that happens to hold that index
        gives LOWERLAYERDOWN: tests/test_kernel_veth_operstate.py); hairpin and isolated
        on a bridge port (`ip link set IFACE type bridge_slave hairpin on isolated on`)."""
        from nsbox.model import linkopts

        if iface not in self.interfaces:
            raise ValidationError(f"node {self.name}: set_link on unknown interface {iface}")
        i = self.interfaces[iface]
        for key, value in (("mac", mac), ("mtu", mtu), ("txqueuelen", txqueuelen), ("up", up),
                           ("hairpin", hairpin), ("isolated", isolated)):
            if value is not None:
                setattr(i, key, value)
        linkopts.check(self.name, i)
        return self

    def address(self, iface: str, cidr: str, *, dad: bool = False, shared: bool = False,
                noprefixroute: bool = False) -> Node:
        """`ip addr add CIDR dev IFACE` (IPv6: `... nodad`, as Docker adds them, unless DAD=True:
        then the kernel runs duplicate address detection and the lab waits for it).
        SHARED: another node of the same L2 segment holds it too, on purpose (anycast, a VIP);
        without it such a duplicate is refused.
        NOPREFIXROUTE=True: `... noprefixroute`, no connected route for the subnet (the CNI
        ptp plugin's pod: it deletes that route and adds `SUBNET via GW` instead)."""
        try:
            ipaddress.ip_interface(cidr)
        except ValueError:
            raise ValidationError(f"{self.name}: bad address {cidr!r} for {iface}") from None
        if "/" not in cidr:
            raise ValidationError(f"{self.name}: address {cidr!r} needs a prefix length, e.g. {cidr}/24")
        if not isinstance(noprefixroute, bool):
            raise ValidationError(f"{self.name}: address {cidr}: noprefixroute is True or False")
        self.addresses.append(Address(iface, cidr, dad, shared=shared, noprefixroute=noprefixroute))
        return self

    def route(self, dst: str, via: str | None = None, dev: str | None = None, *, src: str | None = None,
              scope: str | int | None = None, onlink: bool = False, metric: int | None = None,
              table: str | int | None = None, proto: str | int | None = None,
              type: str | None = None) -> Node:
        """`ip route add [TYPE] DST [via GW] [dev DEV] [src SRC] [scope S] [onlink] [metric M] [table T] [proto P]`

        TYPE: None (unicast), "blackhole", "unreachable" or "prohibit" (no gateway, no device).

        Routes go in in the order given: a gateway must be reachable through an
        address or a route declared before it (Calico: `169.254.1.1 dev eth0 scope
        link`, then `default via 169.254.1.1`)."""
        self.routes.append(Route(dst, via, dev, src, _opt_str(scope), onlink, metric, _opt_str(table),
                                 _opt_str(proto), type))
        return self

    def delete_route(self, dst: str, dev: str | None = None, *, table: str | int | None = None) -> Node:
        """`ip route del DST [dev DEV] [table T]`, in order with the routes: takes away a route
        the kernel made or one declared before (the CNI ptp plugin deletes the pod's prefix
        route, then adds `GW dev eth0 scope link` and `SUBNET via GW`)."""
        self.routes.append(Route(dst, None, dev, table=_opt_str(table), delete=True))
        return self

    def rule(self, table: str | int, *, priority: int | None = None, src: str | None = None,
             dst: str | None = None, iif: str | None = None, oif: str | None = None,
             fwmark: int | None = None, fwmask: int | None = None, invert: bool = False) -> Node:
        """`ip rule add [pref PRIORITY] [not] [from SRC] [to DST] [iif IIF] [oif OIF] [fwmark M[/MASK]] table TABLE`"""
        self.rules.append(PolicyRule(str(table), priority, src, dst, iif, oif, fwmark, fwmask, invert))
        return self

    def neigh(self, dev: str, ip: str, lladdr: str | None = None, *, state: str = "permanent",
              proxy: bool = False) -> Node:
        """`ip neigh add IP lladdr LLADDR dev DEV nud STATE` (proxy: `ip neigh add proxy IP dev DEV`)"""
        self.neighs.append(Neigh(dev, ip, lladdr, state, proxy))
        return self

    def fdb(self, dev: str, mac: str, *, master: bool = True, state: str = "static", dst: str | None = None,
            vlan: int | None = None) -> Node:
        """`bridge fdb add MAC dev DEV master|self STATE [dst DST] [vlan VLAN]`"""
        self.fdbs.append(Fdb(dev, mac, master, state, dst, vlan))
        return self

    def ipset(self, name: str, type: str, entries: list[str] | tuple[str, ...] = (), *,
              family: str = "inet") -> IPSet:
        """`ipset create NAME TYPE family FAMILY` and `ipset add NAME ENTRY` for each entry, in
        the node's netns, before its iptables rules (which match it with `-m set --match-set
        NAME src|dst`). TYPE: hash:ip, hash:net, hash:ip,port, hash:net,port; ENTRIES as
        `ipset list` prints them ("10.0.1.2", "10.244.0.0/16", "10.0.9.0/24 nomatch",
        "10.0.1.2,tcp:80"). Returns the set; `.entries` may be changed until the lab is built."""
        from nsbox.model import ipsets

        where = f"node {self.name}"
        if isinstance(name, str) and name in self.ipsets:
            raise ValidationError(f"{where}: ipset {name} defined twice (ipset: set with the same name already exists)")
        s = ipsets.make(name, type, entries, family, where)
        self.ipsets[s.name] = s
        return s

    def sysctl(self, key: str, value: int | str, *, optional: bool = False) -> Node:
        """`sysctl -w KEY=VALUE` inside the node (net.* keys are per namespace).

        optional: skip the key where this kernel lacks it (e.g. IPv6 keys)."""
        self.sysctls[key] = str(value)
        if optional:
            self.optional_sysctls.add(key)
        return self

    def iptables(self, table: str = "filter") -> Table:
        """The node's iptables table, to add chains, policies and rules to."""
        return self.firewall.table(table)

    def ip6tables(self, table: str = "filter") -> Table:
        """The node's ip6tables table (applied in its own ip6tables-restore)."""
        return self.firewall.table(table, 6)

    def nftables(self, ruleset: str) -> Node:
        """A native nftables ruleset (`nft -f` text) for this node; the lab must
        lab.require("nftables"). Checked with `nft -c` before anything is built."""
        self.firewall.nftables(ruleset)
        return self

    def serve(self, kind: ServerKind, port: int) -> Node:
        """Run a server (http, tcp echo, udp echo) on PORT in this node (its container is
        the one named after the node)."""
        self.servers.append(Server(kind, port))
        return self

    def serve_dns(self, port: int, records: dict[str, str], *, address: str | None = None) -> Node:
        """A DNS server (UDP) answering A queries for RECORDS ({name: address}) and NXDOMAIN
        for anything else; ADDRESS binds it (Docker's embedded DNS: 127.0.0.11)."""
        self.servers.append(Server("dns", port, None, address, _records(records)))
        return self

    def proxy(self, proto: Literal["tcp", "udp"], host_port: int, container_ip: str, container_port: int, *,
              host_ip: str = "0.0.0.0", name: str = "docker-proxy", dns_local: int | None = None,
              dns_servfail: bool = False, udp_reply_from_route: bool = False) -> Node:
        """A userland proxy process (`docker-proxy -proto P -host-ip HOST_IP -host-port HOST_PORT
        -container-ip IP -container-port PORT`) running in this node. DNS_LOCAL: dockerd's
        embedded DNS resolver instead (the docker kit's embedded_dns)."""
        self.proxies.append(Proxy(proto, host_ip, host_port, container_ip, container_port, name,
                                  dns_local, dns_servfail, udp_reply_from_route))
        return self

    def server_name(self, server: Server) -> str:
        return server.container or self.name

    # -- queries --
    def addresses_of(self, iface: str) -> list[Address]:
        return [a for a in self.addresses if a.iface == iface]

    @property
    def primary_ip(self) -> str | None:
        """The first address on a non-loopback interface: what a probe targets by default."""
        for a in self.addresses:
            if a.iface != "lo":
                return a.ip
        return None

    def first_ip(self, family: int) -> str | None:
        """The first address of FAMILY (4 or 6) on a non-loopback interface."""
        return next((a.ip for a in self.addresses
                     if a.iface != "lo" and a.network.version == family), None)

    def _new_iface(self, iface: Interface) -> None:
        if iface.name in self.interfaces:
            raise ValidationError(f"{self.name}: interface {iface.name} defined twice")
        self.interfaces[iface.name] = iface


@dataclass(frozen=True)
class VethPair:
    a_node: str
    a_name: str
    b_node: str
    b_name: str


@dataclass(frozen=True)
class Link:
    """A link of a registered kind (nsbox.kinds.links): macvlan, ipvlan, vlan, vxlan, dummy.

    parent: (node, interface) it is created on (macvlan, ipvlan, vlan); the link is
    made in the parent's node and moved into NODE in the same request."""

    kind: str
    node: str
    name: str
    parent: tuple[str, str] | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def spec(self) -> Any:
        """The kind's validated Options."""
        from nsbox.kinds import links
        return links.get(self.kind).options(dict(self.options))

    @property
    def made_in(self) -> str:
        return self.parent[0] if self.parent else self.node


@dataclass
class Lab:
    name: str
    description: str = ""
    nodes: dict[str, Node] = field(default_factory=dict)
    veths: list[VethPair] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    requires: set[str] = field(default_factory=set)  # kernel features, see host/features.py
    matrices: list[Matrix] = field(default_factory=list)  # all-pairs groups of reach checks
    links: list[Link] = field(default_factory=list)  # links of registered kinds, in creation order
    containers: dict[str, Container] = field(default_factory=dict)  # beside the one per node
    machines: list[Machine] = field(default_factory=list)
    virtuals: list[Virtual] = field(default_factory=list)
    # names a probe may target besides nodes: a Service's name -> its address (kits fill it;
    # resolved when the check is made, so nothing of it is handed over to the runner)
    target_names: dict[str, str] = field(default_factory=dict)
    # pod sandboxes: nodes whose netns a `pause` process holds while the lab runs, as on a
    # real node (see sandbox())
    sandboxes: list[str] = field(default_factory=list)
    # how the lab was made: the recipe file it came from and the `--set` values it was built
    # with (the loader fills them; `rerun_command` rebuilds the lab from them)
    source: str = ""
    sets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every lab has a node named `host`: the machine the lab stands for (the Docker
        # host, the node under a cluster). It is a node like any other.
        self.nodes.setdefault(HOST, Node(HOST))

    @property
    def host(self) -> Node:
        return self.nodes[HOST]

    def container(self, name: str, node: Node | str) -> ContainerHandle:
        """A container NAME sharing NODE's netns (`docker run --name NAME --network
        container:NODE`, a pod's second container): same interfaces and addresses, its own
        servers (`.serve(kind, port)`), and its own name as a probe source or target and
        in answered_by."""
        n = self._node(node, f"container {name}")
        if not _NODE_RE.match(name):
            raise ValidationError(f"bad container name {name!r} (letters, digits, '-', '_', '.'; at most 32)")
        if name in self.nodes or name in self.containers:
            raise ValidationError(f"container {name}: the name is taken by a node or a container")
        self.containers[name] = Container(name, n.name)
        return ContainerHandle(n, name)

    def sandbox(self, node: Node | str) -> Node:
        """NODE is a pod's sandbox: while the lab runs, a holder process (argv "pause
        infinity", in NODE's netns) keeps it, as the pause container does on a real node;
        the pod's containers (container()) each serve from a process of their own named
        after the container, so `ip netns pids`, `ps` and `ss -p` show the pod as a node does."""
        n = self._node(node, "sandbox")
        if n.name not in self.sandboxes:
            self.sandboxes.append(n.name)
        return n

    def machine(self, name: str, nodes: list[Node | str]) -> Machine:
        """A machine NAME that holds NODES (its root namespace and those of its containers or
        pods): reports, --then's NSBOX_MACHINE_* variables and `nsbox show` group by it."""
        names = tuple(self._node(n, f"machine {name}").name for n in nodes)
        if not _NODE_RE.match(name):
            raise ValidationError(f"bad machine name {name!r} (letters, digits, '-', '_', '.'; at most 32)")
        if not names or len(set(names)) != len(names):
            raise ValidationError(f"machine {name}: needs distinct nodes, got {list(names)}")
        for m in self.machines:
            if m.name == name:
                raise ValidationError(f"machine {name} defined twice")
            both = set(m.nodes) & set(names)
            if both:
                raise ValidationError(f"machine {name}: node {sorted(both)[0]} is already in machine {m.name}")
        machine = Machine(name, names)
        self.machines.append(machine)
        return machine

    def place(self, machine: str, node: Node | str) -> Machine:
        """Put NODE (a pod's or container's netns made after the machine) on MACHINE, after
        the nodes it holds already. The one way a kit adds to a machine: the model keeps
        its own lists, a kit never edits them in place."""
        name = self._node(node, f"machine {machine}").name
        for i, m in enumerate(self.machines):
            if m.name == machine:
                other = self.machine_of(name)
                if other is not None:
                    raise ValidationError(f"machine {machine}: node {name} is already in machine {other}")
                self.machines[i] = Machine(m.name, (*m.nodes, name))
                return self.machines[i]
        raise ValidationError(f"no machine {machine!r} to put {name} on")

    def machine_of(self, node: str) -> str | None:
        return next((m.name for m in self.machines if node in m.nodes), None)

    def virtual(self, ip: str, *, proto: str | None = None, port: int | None = None,
                node: Node | str | None = None, name: str | None = None) -> Virtual:
        """An address that rules answer for though no interface owns it (a Service ClusterIP),
        or PROTO/PORT of an address a node owns where no server listens but DNAT sends the
        packets on (a published port; NODE's loopback with node=). Probes may target it;
        answered_by= says who must answer."""
        where = f"virtual {ip}" + (f":{port}" if port is not None else "")
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise ValidationError(f"{where}: bad address {ip!r}") from None
        if (proto is None) != (port is None):
            raise ValidationError(f"{where}: give proto and port together (a published port), or neither "
                                  f"(the whole address)")
        if proto is not None and proto not in protocols.TRANSPORTS:
            raise ValidationError(f"{where}: proto is {protocols.one_of(protocols.TRANSPORTS)}, not {proto!r}")
        if port is not None and not (type(port) is int and 1 <= port <= 65535):
            raise ValidationError(f"{where}: port {port!r} out of range 1-65535")
        n = self._node(node, where).name if node is not None else None
        if addr.is_loopback and (n is None or port is None):
            raise ValidationError(f"{where}: a loopback address is virtual only as one port of one node "
                                  f"(proto=, port=, node=)")
        v = Virtual(str(addr), proto, port, n, name)
        if v in self.virtuals:
            raise ValidationError(f"{where} declared twice")
        self.virtuals.append(v)
        return v

    def _node(self, node: Node | str | None, where: str) -> Node:
        name = node if isinstance(node, str) else getattr(node, "name", None)
        if name not in self.nodes:
            raise ValidationError(f"{where}: {name!r} is no node of the lab")
        return self.nodes[name]

    def node(self, name: str) -> Node:
        """`ip netns add NAME` (lo is brought up with it)."""
        if not isinstance(name, str):
            raise ValidationError(f"a node name is text, not {name!r}")
        if name in self.nodes:
            raise ValidationError(f"node {name} defined twice")
        self.nodes[name] = Node(name)
        return self.nodes[name]

    def veth(self, a: Node, a_name: str, b: Node, b_name: str, *, b_master: str | None = None,
             mtu: int | None = None) -> VethPair:
        """`ip link add A_NAME netns A type veth peer name B_NAME netns B` (+ `master`).

        Per-side options (mac, txqueuelen, up, hairpin, ...): NODE.set_link(NAME, ...)."""
        a._new_iface(Interface(a_name, "veth", mtu=mtu))
        b._new_iface(Interface(b_name, "veth", master=b_master, mtu=mtu))
        pair = VethPair(a.name, a_name, b.name, b_name)
        self.veths.append(pair)
        return pair

    def link(self, kind: str, node: Node | str, name: str, *, parent: tuple[Node | str, str] | None = None,
             **options: Any) -> Link:
        """`ip link add NAME [link PARENT netns NODE] type KIND OPTIONS…` (see nsbox.kinds.links).

        The kind's kernel feature becomes a requirement: a kernel without it SKIPs."""
        from nsbox.kinds import links

        k = links.get(kind)
        n = self.nodes[node] if isinstance(node, str) else node
        where = f"node {n.name}: {kind} {name}"
        if k.builder:
            return self._built_link(k, n, name, parent, options, where)
        if k.needs_parent != (parent is not None):
            raise ValidationError(f"{where}: " + ("needs parent=(node, interface)" if k.needs_parent
                                                  else "takes no parent"))
        par = None
        if parent is not None:
            pnode = parent[0] if isinstance(parent[0], str) else parent[0].name
            if pnode not in self.nodes or parent[1] not in self.nodes[pnode].interfaces:
                raise ValidationError(f"{where}: parent {parent[1]} is no interface of node {pnode}")
            par = (pnode, parent[1])
        try:
            spec = k.options(dict(options))
        except TypeError as e:
            raise ValidationError(f"{where}: {e}") from None
        made_in = self.nodes[par[0]] if par else n
        for dep in k.depends(spec):
            if dep not in made_in.interfaces:
                raise ValidationError(f"{where}: device {dep} is no interface of node {made_in.name}")
        n._new_iface(Interface(name, kind))
        link = Link(kind, n.name, name, par, tuple(sorted(options.items())))
        self.links.append(link)
        self.requires.add(kind)
        return link

    def _built_link(self, k: Any, n: Node, name: str, parent: Any, options: dict[str, Any], where: str) -> Any:
        """lab.link() for veth and bridge: validated by their kind, made by their builder."""
        if parent is not None:
            raise ValidationError(f"{where}: takes no parent")
        try:
            spec = k.options(dict(options))
        except TypeError as e:
            raise ValidationError(f"{where}: {e}") from None
        if k.name == "bridge":
            n.bridge(name, stp=spec.stp, vlan_filtering=spec.vlan_filtering)
            if spec.vlan_filtering:
                self.requires.add("vlan_filtering")
            return n.interfaces[name]
        pnode, pname = spec.peer
        other = self.nodes.get(pnode if isinstance(pnode, str) else pnode.name)
        if other is None:
            raise ValidationError(f"{where}: peer node {pnode!r} is no node of the lab")
        return self.veth(other, pname, n, name, b_master=spec.master, mtu=spec.mtu)

    def macvlan(self, node: Node | str, name: str, parent: tuple[Node | str, str], mode: str = "bridge") -> Link:
        """A macvlan child NAME in NODE on PARENT=(node, interface)."""
        return self.link("macvlan", node, name, parent=parent, mode=mode)

    def ipvlan(self, node: Node | str, name: str, parent: tuple[Node | str, str], mode: str = "l2") -> Link:
        return self.link("ipvlan", node, name, parent=parent, mode=mode)

    def vlan(self, node: Node | str, name: str, parent: tuple[Node | str, str], id: int) -> Link:
        return self.link("vlan", node, name, parent=parent, id=id)

    def vxlan(self, node: Node | str, name: str, vni: int, **options: Any) -> Link:
        """options: port (4789), local, remote, dev, learning (True)."""
        return self.link("vxlan", node, name, vni=vni, **options)

    def dummy(self, node: Node | str, name: str) -> Link:
        return self.link("dummy", node, name)

    def require(self, *features: str) -> None:
        """Declare kernel features the lab needs; missing ones make the recipe SKIP."""
        for f in features:
            if f not in FEATURES:
                raise ValidationError(f"unknown kernel feature {f!r} (known: {', '.join(FEATURES)})")
        self.requires.update(features)

    # -- expectations --
    def expect(self, src: str, dst: str, proto: str, port: int | None = None,
               *, allow: bool = True, seen_from: str | list[str] | tuple[str, ...] | None = None,
               name: str | None = None,
               dropped_by: tuple[str, str, str, str] | None = None,
               counted_by: tuple[str, str, str, str] | None = None, deny: str | None = None,
               size: int | None = None, df: bool = False,
               answered_by: str | Node | set[str] | frozenset[str] | list[str] | None = None,
               family: int | None = None) -> ReachCheck:
        """SRC can (allow=True) or cannot reach DST (a node name or an address in the lab)
        with PROTO, a probe protocol of nsbox/kinds/protocols/ (icmp, tcp, udp, http, sctp;
        dns: expect_dns); PORT for all but icmp.

        seen_from: the source address the server must have seen (proves NAT); a list: any
        one of them (a SNAT to a range, several egress addresses).
        dropped_by: (node, table, chain, rule spec or "policy"): the deny must be that
        rule's doing -- its packet counter rises while the probe is dropped.
        counted_by: the same form, on any check and for a rule of any target (ACCEPT,
        DNAT, MASQUERADE, MARK, a jump): its packet counter must rise for this probe.
        deny: with allow=False, how the denial must show: "refused" (RST / ICMP port
        unreachable), "unreachable" (ICMP host/net unreachable), "filtered" (ICMP
        admin prohibited) or "timeout" (nothing came back).
        size, df: an icmp echo whose IP packet is SIZE bytes, with don't-fragment (df=True):
        passes a path whose MTU is at least SIZE, fails a smaller one.
        answered_by: the container (or one of a set) whose server must answer: proves where
        DNAT sent the connection (a published port, a Service's endpoints).
        family: 4 or 6, the address of a node-name DST to probe (default its first address).
        A dropped_by rule is one of the probe's family: ip6tables for an IPv6 destination."""
        from nsbox.kinds.checks.reach import expect
        return expect(self, src, dst, proto, port, allow=allow, seen_from=seen_from, name=name, dropped_by=dropped_by,
                      counted_by=counted_by, deny=deny, size=size, df=df, answered_by=answered_by, family=family)

    def expect_conntrack(self, node: str | Node, of: ReachCheck, reply_dst: str, name: str | None = None, *,
                         reply_src: str | None = None, reply_sport: int | None = None) -> ConntrackCheck:
        """NODE's conntrack holds OF's connection, with the reply tuple addressed to REPLY_DST
        (the NAT'd source); REPLY_SRC[:REPLY_SPORT]: the reply comes from there (where a DNAT
        sent the connection: original destination host:8080, reply source c1:80)."""
        from nsbox.kinds.checks.conntrack import expect_conntrack
        return expect_conntrack(self, node, of, reply_dst, name, reply_src=reply_src, reply_sport=reply_sport)

    def expect_link(self, node: Node | str, iface: str, state: str = "UP", name: str | None = None) -> LinkCheck:
        """IFACE of NODE is in operational state STATE: UP, DOWN, LOWERLAYERDOWN (a veth
        whose peer is down: NO-CARRIER), UNKNOWN (lo when up), ... as `ip link` shows it."""
        from nsbox.kinds.checks.link import expect_link
        return expect_link(self, node, iface, state, name)

    def expect_route(self, node: Node | str, dst: str, *, via: str | None = None, dev: str | None = None,
                     src: str | None = None, direct: bool = False, type: str = "unicast",
                     name: str | None = None) -> Any:
        """NODE's kernel routes DST via VIA out of DEV with source SRC, as `ip route get DST`
        answers (direct=True: no gateway); see nsbox/model/routes.py."""
        from nsbox.model.routes import expect_route
        return expect_route(self, node, dst, via=via, dev=dev, src=src, direct=direct, type=type, name=name)

    def expect_neigh(self, node: Node | str | ContainerHandle, ip: str, *, lladdr: str | None = None,
                     dev: str | None = None, state: str | None = None, name: str | None = None) -> Any:
        """NODE's kernel holds a neighbour entry for IP (LLADDR, DEV, STATE), read after the
        traffic checks; see nsbox/model/routes.py."""
        from nsbox.model.routes import expect_neigh
        return expect_neigh(self, node if isinstance(node, (str, Node)) else node.name, ip, lladdr=lladdr,
                            dev=dev, state=state, name=name)

    def expect_dns(self, src: str | Node | ContainerHandle, server: str, name: str, answer: str | None,
                   port: int = 53, *, check_name: str | None = None) -> ReachCheck:
        """SRC asks the DNS server at SERVER (an address: a lab one, a declared virtual one or
        SRC's loopback, e.g. 127.0.0.11) for NAME's A record; ANSWER is the address it must
        give, or None for NXDOMAIN (a name the server must not know)."""
        from nsbox.kinds.checks.reach import expect_dns
        return expect_dns(self, src, server, name, answer, port, check_name=check_name)

    def expect_interfaces(self, node: str | Node | ContainerHandle, names: list[str],
                          name: str | None = None) -> InterfacesCheck:
        """NODE's netns holds exactly the interfaces NAMES, as the kernel lists them."""
        from nsbox.kinds.checks.interfaces import expect_interfaces
        return expect_interfaces(self, node, names, name)

    def expect_port_conflict(self, container: str | Node | ContainerHandle, proto: Literal["tcp", "udp"],
                             port: int, held_by: str | Node | ContainerHandle,
                             name: str | None = None) -> BindCheck:
        """CONTAINER's server on PROTO/PORT cannot start: HELD_BY, in the same netns, has the
        port (the bind fails with EADDRINUSE, as a second host-mode container's does)."""
        from nsbox.kinds.checks.bind import expect_port_conflict
        return expect_port_conflict(self, container, proto, port, held_by, name)

    def expect_matrix(self, nodes: list[Node | str], proto: str,
                      port: int | None = None, *, expected: Expected = True, name: str | None = None,
                      include_self: bool = False) -> Matrix:
        """Every ordered pair of NODES: SRC reaches DST with PROTO[/PORT] as EXPECTED says
        (True/False for all, a function (src, dst) -> bool, or a {(src, dst): bool} map)."""
        names = tuple(n if isinstance(n, str) else n.name for n in nodes)
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValidationError(f"expect_matrix needs two or more distinct nodes, got {list(names)}")
        label = name or (f"{proto}/{port} matrix" if port else f"{proto} matrix")
        if any(m.name == label for m in self.matrices):
            raise ValidationError(f"two matrices named {label!r}")
        cells = tuple((s, d, expected_of(expected, s, d)) for s in names for d in names
                      if include_self or s != d)
        matrix = Matrix(label, names, proto, port, cells)
        for s, d, allow in cells:
            self.expect(s, d, proto, port, allow=allow, name=matrix.cell_name(s, d))
        self.matrices.append(matrix)
        return matrix

    def expect_spread(self, src: Any, service: Any, port: int, *, proto: Literal["tcp", "udp", "http"] = "http",
                      probes: int = 30, at_least: int = 2, max_share: float = 1.0,
                      answered_by: Any = None, name: str | None = None, at_most: int | None = None) -> Any:
        """PROBES connections from SRC to SERVICE:PORT, each recording the endpoint that
        answered; passes when AT_LEAST distinct endpoints answered (AT_MOST at most: 1 for
        sessionAffinity ClientIP) and none took more than MAX_SHARE of the answers. See
        nsbox/model/spread.py."""
        from nsbox.model.spread import expect_spread
        return expect_spread(self, src, service, port, proto=proto, probes=probes, at_least=at_least,
                             max_share=max_share, answered_by=answered_by, name=name, at_most=at_most)

    def _target_name(self, dst: Any) -> Any:
        """A probe's destination: a node, container, address, or an object with a
        `probe_target` (a k8s Service: its ClusterIP), or a name in target_names."""
        target = getattr(dst, "probe_target", None)
        if isinstance(target, str):
            return target
        dst = _name(dst)
        if not isinstance(dst, str):
            raise ValidationError(f"expect: a destination is a node, container, address or Service, "
                                  f"not {type(dst).__name__}")
        if dst not in self.nodes and dst not in self.containers:
            return self.target_names.get(dst, dst)
        return dst

    def __getattr__(self, name: str) -> Any:
        """lab.expect_X(...) of a check kind whose module declares that builder
        (nsbox/kinds/checks/: `builder="expect_X"`): a new check type needs no method here."""
        if name.startswith("expect_"):
            from nsbox.kinds.checks import builders

            kind = builders().get(name)
            if kind is not None and kind.build is not None:
                build = kind.build
                return lambda *args, **kwargs: build(self, *args, **kwargs)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _add_check(self, check: Check) -> None:
        if any(c.name == check.name for c in self.checks):
            raise ValidationError(f"two checks named {check.name!r}")
        feature = protocols.feature_of(getattr(check, "proto", None))
        if feature is not None:  # a protocol the kernel may lack (sctp): the lab SKIPs without it
            self.requires.add(feature)
        self.checks.append(check)

    # -- address lookups used by validation and the verifier --
    def owner_of(self, ip: str) -> Node | None:
        for node in self.nodes.values():
            if any(a.ip == ip for a in node.addresses):
                return node
        return None

    def netns_of(self, name: str) -> Node:
        """The node (netns) of a node or container name."""
        if name in self.nodes:
            return self.nodes[name]
        if name in self.containers:
            return self.nodes[self.containers[name].node]
        raise ValidationError(f"unknown node or container {name!r}")

    def target(self, src: str, dst: str, proto: str, port: int | None, family: int | None = None) -> Target:
        """Where a probe from SRC to DST goes: a lab address, a declared virtual one, or SRC's
        own loopback. Anything else is refused: traffic stays in the lab. FAMILY picks a
        node-name DST's address of that family."""
        l4 = protocols.transport_of(proto)
        if dst in self.containers:
            dst = self.containers[dst].node
        if dst not in self.nodes:
            try:
                addr = ipaddress.ip_address(dst)
            except ValueError:
                raise ValidationError(f"unknown node or container {dst!r}") from None
            if family is not None and addr.version != family:
                raise ValidationError(f"{dst} is an IPv{addr.version} address, but the check asks for family {family}")
            src_node = self.netns_of(src)
            if addr.is_loopback:  # 127.0.0.0/8 or ::1: the source's own netns
                return Target(str(addr), src_node, f"{src_node.name} loopback", loopback=True)
            owners = [n for n in self.nodes.values() if any(a.ip == str(addr) for a in n.addresses)]
            if not owners:
                v = next((v for v in self.virtuals if v.covers(str(addr), l4, port, None) and v.port is None), None)
                if v is None:
                    raise ValidationError(f"{dst} belongs to no node of the lab and is declared no virtual "
                                          f"address (lab.virtual); probes only target lab addresses")
                return Target(str(addr), self.nodes.get(v.node) if v.node else None, v.label)
        node, ip = self.resolve(dst, family)
        return Target(ip, node, node.name)

    def virtual_for(self, t: Target, proto: str, port: int | None) -> Virtual | None:
        """The declared virtual address or port the probe to T goes to, if any."""
        l4 = protocols.transport_of(proto)
        node = t.node.name if t.node is not None else None
        return next((v for v in self.virtuals if v.covers(t.ip, l4, port, node)), None)

    def resolve(self, target: str, family: int | None = None) -> tuple[Node, str]:
        """A probe target (node name or address) -> (owning node, address); a node name
        means its first address (of FAMILY, if given)."""
        if target in self.containers:
            target = self.containers[target].node
        if target in self.nodes:
            node = self.nodes[target]
            ip = node.primary_ip if family is None else node.first_ip(family)
            if ip is None:
                what = "address" if family is None else f"IPv{family} address"
                raise ValidationError(f"node {target} has no {what} to probe")
            return node, ip
        try:
            ipaddress.ip_address(target)
        except ValueError:
            raise ValidationError(f"unknown node {target!r}") from None
        owners = [n.name for n in self.nodes.values() if any(a.ip == target for a in n.addresses)]
        if len(owners) > 1:
            # The kernel lets every node hold the address (each Kubernetes node's
            # 169.254.1.1 or docker0 gateway); which one a probe means is not said.
            raise ValidationError(f"{target} is an address of several nodes ({', '.join(owners)}); "
                                  f"probe one of them by node name")
        owner = self.owner_of(target)
        if owner is None:
            # Traffic stays in the lab: never probe an address no lab namespace owns.
            raise ValidationError(f"{target} belongs to no node of the lab; probes only target lab addresses")
        return owner, target


class ContainerHandle:
    """What lab.container() returns: serve() adds a server of that container."""

    def __init__(self, node: Node, name: str) -> None:
        self.node, self.name = node, name

    def serve(self, kind: ServerKind, port: int) -> ContainerHandle:
        self.node.servers.append(Server(kind, port, self.name))
        return self

    def serve_dns(self, port: int, records: dict[str, str], *, address: str | None = None) -> ContainerHandle:
        self.node.servers.append(Server("dns", port, self.name, address, _records(records)))
        return self


def _records(records: dict[str, str]) -> tuple[tuple[str, str], ...]:
    out = []
    for name, ip in records.items():
        try:
            if ipaddress.ip_address(ip).version != 4:
                raise ValueError
        except ValueError:
            raise ValidationError(f"dns record {name!r}: {ip!r} is not an IPv4 address") from None
        if not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})", name) or ".." in name:
            raise ValidationError(f"dns record {name!r}: not a host name")
        out.append((name.lower(), ip))
    return tuple(sorted(out))


_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def _name(x: Any) -> Any:
    """A node, a container handle or a name -> the name (recipes may pass either)."""
    return x.name if isinstance(x, (Node, ContainerHandle)) else x


def _opt_str(v: str | int | None) -> str | None:
    return None if v is None else str(v)


def _reach_name(src: str, dst: str, proto: str, port: int | None) -> str:
    return f"{proto}/{port} {src}->{dst}" if port else f"{proto} {src}->{dst}"
