"""The lab as plain data: nodes (network namespaces), interfaces, veth pairs,
bridges, addresses, routes, sysctls, firewalls, servers and expectations.

Nothing here touches the kernel. A recipe builds a `Lab` with the builder
methods below, each one the equivalent of a line you could type by hand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from nsbox.errors import ValidationError
from nsbox.model.checks import Check, ConntrackCheck, LinkCheck, ReachCheck
from nsbox.model.firewall import Firewall, Table
from nsbox.model.matrix import Expected, Matrix, expected_of

HOST = "host"  # the node that plays the Docker host / Kubernetes machine

ServerKind = Literal["http", "tcp", "udp"]

# Kernel features a recipe may require (lab.require); each is probed for real.
FEATURES = ("veth", "bridge", "macvlan", "ipvlan", "vlan", "dummy", "vxlan", "geneve", "wireguard",
            "nat", "conntrack", "ipv6", "nftables", "vlan_filtering")


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


@dataclass(frozen=True)
class Address:
    iface: str
    cidr: str  # e.g. "172.17.0.2/16"

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.cidr).ip)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(self.cidr).network


@dataclass(frozen=True)
class Route:
    """`ip route add DST [via VIA] [dev DEV] [src SRC] [scope S] [onlink] [metric M] [table T] [proto P]`.

    Unset fields are left to the kernel, as `ip` leaves them: scope link for a
    route without a gateway, universe with one; metric 0 (IPv4) or 1024 (IPv6);
    table main; proto boot. Encoded by nsbox/kernel/routing.py."""

    dst: str  # "default" or a CIDR
    via: str | None = None
    dev: str | None = None
    src: str | None = None      # preferred source address: an address of this node
    scope: str | None = None    # global, site, link, host or 0-255
    onlink: bool = False        # the gateway is on DEV's link, whatever the subnets say
    metric: int | None = None
    table: str | None = None    # main, local, default or 1-4294967295
    proto: str | None = None    # boot, static, kernel, dhcp, ... or 0-255


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
    servers: list[Server] = field(default_factory=list)

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
        down shows NO-CARRIER, its state LOWERLAYERDOWN); hairpin and isolated on a
        bridge port (`ip link set IFACE type bridge_slave hairpin on isolated on`)."""
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

    def address(self, iface: str, cidr: str) -> Node:
        """`ip addr add CIDR dev IFACE`"""
        try:
            ipaddress.ip_interface(cidr)
        except ValueError:
            raise ValidationError(f"{self.name}: bad address {cidr!r} for {iface}") from None
        if "/" not in cidr:
            raise ValidationError(f"{self.name}: address {cidr!r} needs a prefix length, e.g. {cidr}/24")
        self.addresses.append(Address(iface, cidr))
        return self

    def route(self, dst: str, via: str | None = None, dev: str | None = None, *, src: str | None = None,
              scope: str | int | None = None, onlink: bool = False, metric: int | None = None,
              table: str | int | None = None, proto: str | int | None = None) -> Node:
        """`ip route add DST [via GW] [dev DEV] [src SRC] [scope S] [onlink] [metric M] [table T] [proto P]`

        Routes go in in the order given: a gateway must be reachable through an
        address or a route declared before it (Calico: `169.254.1.1 dev eth0 scope
        link`, then `default via 169.254.1.1`)."""
        self.routes.append(Route(dst, via, dev, src, _opt_str(scope), onlink, metric, _opt_str(table),
                                 _opt_str(proto)))
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
        """Run a server (http, tcp echo, udp echo) on PORT in this node."""
        self.servers.append(Server(kind, port))
        return self

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
    requires: set[str] = field(default_factory=set)  # kernel features, see kernel/features.py
    matrices: list[Matrix] = field(default_factory=list)  # all-pairs groups of reach checks
    links: list[Link] = field(default_factory=list)  # links of registered kinds, in creation order

    def __post_init__(self) -> None:
        self.nodes.setdefault(HOST, Node(HOST))

    @property
    def host(self) -> Node:
        return self.nodes[HOST]

    def node(self, name: str) -> Node:
        """`ip netns add NAME` (lo is brought up with it)."""
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
    def expect(self, src: str, dst: str, proto: Literal["icmp", "tcp", "udp", "http"], port: int | None = None,
               *, allow: bool = True, seen_from: str | None = None, name: str | None = None,
               dropped_by: tuple[str, str, str, str] | None = None) -> ReachCheck:
        """SRC can (allow=True) or cannot reach DST (a node name or an address in the lab).

        seen_from: the source address the server must have seen (proves NAT).
        dropped_by: (node, table, chain, rule spec or "policy"): the deny must be that
        rule's doing -- its packet counter rises while the probe is dropped."""
        if dropped_by is not None:
            dropped_by = tuple(dropped_by)  # type: ignore[assignment]
        check = ReachCheck(src=src, dst=dst, proto=proto, port=port, allow=allow, seen_from=seen_from,
                           name=name or _reach_name(src, dst, proto, port), dropped_by=dropped_by)
        self._add_check(check)
        return check

    def expect_conntrack(self, node: str, of: ReachCheck, reply_dst: str, name: str | None = None) -> ConntrackCheck:
        """NODE's conntrack holds OF's connection, with the reply tuple addressed to REPLY_DST."""
        check = ConntrackCheck(node=node, of=of.name, reply_dst=reply_dst,
                               name=name or f"conntrack {node}: {of.name}")
        self._add_check(check)
        return check

    def expect_link(self, node: Node | str, iface: str, state: str = "UP", name: str | None = None) -> LinkCheck:
        """IFACE of NODE is in operational state STATE: UP, DOWN, LOWERLAYERDOWN (a veth
        whose peer is down: NO-CARRIER), UNKNOWN (lo when up), ... as `ip link` shows it."""
        n = node if isinstance(node, str) else node.name
        check = LinkCheck(name=name or f"link {n}/{iface} {state}", node=n, iface=iface, state=state)
        self._add_check(check)
        return check

    def expect_matrix(self, nodes: list[Node | str], proto: Literal["icmp", "tcp", "udp", "http"],
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

    def _add_check(self, check: Check) -> None:
        if any(c.name == check.name for c in self.checks):
            raise ValidationError(f"two checks named {check.name!r}")
        self.checks.append(check)

    # -- address lookups used by validation and the verifier --
    def owner_of(self, ip: str) -> Node | None:
        for node in self.nodes.values():
            if any(a.ip == ip for a in node.addresses):
                return node
        return None

    def resolve(self, target: str) -> tuple[Node, str]:
        """A probe target (node name or address) -> (owning node, address)."""
        if target in self.nodes:
            node = self.nodes[target]
            if node.primary_ip is None:
                raise ValidationError(f"node {target} has no address to probe")
            return node, node.primary_ip
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


def _opt_str(v: str | int | None) -> str | None:
    return None if v is None else str(v)


def _reach_name(src: str, dst: str, proto: str, port: int | None) -> str:
    return f"{proto}/{port} {src}->{dst}" if port else f"{proto} {src}->{dst}"
