"""Validation of addresses, routes, policy rules, neighbour and FDB entries that
follows the kernel: what it accepts is accepted, what it refuses is refused here
in one line, before anything is built, with the kernel's own reason.

Each refusal rule names the errno or extack message the kernel gives for it, and
tests/kernel/test_kernel_routing.py shows the kernel refusing the same thing. Things the
kernel accepts although they look odd are accepted on purpose:

- the same /32 on several interfaces of one node (kindnet/ptp host veths);
- overlapping subnets on two interfaces of one node;
- the same address in several nodes (each node's docker0 172.17.0.1);
- a gateway reached through a device route declared earlier
  (Calico: `169.254.1.1 dev eth0 scope link`, then `default via 169.254.1.1`);
- a gateway anywhere with `onlink` on a device;
- policy rules naming interfaces that do not exist (yet), addresses with host bits
  in a rule's from/to, neighbour entries outside every subnet.

Routes are checked in declaration order against a model of the tables the kernel
holds at that point: the prefix routes of the node's addresses, then every route
declared before.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nsbox.errors import ValidationError
from nsbox.wire import routing
from nsbox.model.lab import Node, PolicyRule, Route
from nsbox.model.names import ifname_problem

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_PER_IFACE_SYSCTL = re.compile(r"^net\.ipv[46]\.(?:conf|neigh)\.([^.]+)\.")
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_routing(node: Node) -> None:
    """Every rule below for NODE; raises ValidationError for the first problem."""
    check_addresses(node)
    _Tables(node).add_all()
    _check_rules(node)
    _check_neighs(node)
    _check_fdbs(node)
    _check_iface_sysctls(node)


# -- addresses --

def check_addresses(node: Node) -> None:
    """The kernel refuses only the same address twice on one interface (EEXIST:
    "Address already assigned"): for IPv4 the same address and prefix length, for
    IPv6 the same address whatever the prefix."""
    seen: dict[tuple[str, str], str] = {}
    for a in node.addresses:
        iface = ipaddress.ip_interface(a.cidr)
        key = (a.iface, str(iface.ip) if iface.version == 6 else str(iface))
        if key in seen:
            raise ValidationError(f"node {node.name}: address {a.cidr} is on {a.iface} twice ({seen[key]} "
                                  f"already; the kernel: EEXIST, address already assigned)")
        seen[key] = a.cidr


# -- routes --

@dataclass(frozen=True)
class _Entry:
    """A route as the kernel's FIB holds it, for gateway lookups and EEXIST."""

    table: int
    net: IpNet
    metric: int
    dev: str | None       # None: resolved from the gateway (unknown here; any)
    scope: int
    gateway: bool
    what: str


class _Tables:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.entries: list[_Entry] = []
        self.local: dict[IpAddr, str] = {}       # local address -> interface
        self.broadcast: dict[IpAddr, str] = {}   # IPv4 subnet broadcast -> interface
        for a in node.addresses:
            iface = ipaddress.ip_interface(a.cidr)
            self.local[iface.ip] = a.iface
            if iface.version == 4 and iface.network.prefixlen < 31:
                self.broadcast[iface.network.broadcast_address] = a.iface
            # The prefix route the kernel adds with the address: IPv4 none for a /32,
            # metric 0; IPv6 metric 256 (none for a /128).
            # A device left down has no prefix route (the kernel adds it at `link set up`).
            if iface.network.prefixlen < iface.max_prefixlen and self._up(a.iface) \
                    and not a.noprefixroute:
                # (appended: two interfaces in one subnet each get theirs, as in the kernel)
                self.entries.append(_Entry(routing.TABLES["main"], iface.network, 0 if iface.version == 4 else 256,
                                           a.iface, routing.SCOPES["link"], False,
                                           f"the prefix route of address {a.cidr}"))
        # 127.0.0.0/8 and ::1 are local through lo in every namespace.
        self.loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_address("::1"))

    def _up(self, name: str) -> bool:
        iface = self.node.interfaces.get(name)
        return iface is None or getattr(iface, "up", True)

    def _put(self, e: _Entry) -> None:
        for old in self.entries:
            if (old.table, old.net, old.metric) == (e.table, e.net, e.metric):
                table = next((k for k, v in routing.TABLES.items() if v == e.table), str(e.table))
                hint = ""
                if old.what.startswith("the prefix route of address"):
                    # The CNI ptp plugin's pod: it deletes the kernel's prefix route, then routes
                    # the subnet via the gateway. nsbox writes the end state directly.
                    hint = (f"; the CNI ptp plugin deletes that prefix route first: write "
                            f"delete_route('{e.net}', dev=...) before this route, or the address "
                            f"with noprefixroute=True (`ip addr add ... noprefixroute`)")
                raise ValidationError(f"node {self.node.name}: two routes to {e.net} in table {table} with metric "
                                      f"{e.metric}: {old.what} and {e.what} (the kernel: EEXIST){hint}")
        self.entries.append(e)

    def add_all(self) -> None:
        for r in self.node.routes:
            self.add(r)

    def add(self, r: Route) -> None:
        node, where = self.node, f"node {self.node.name}: route {r.dst}"
        net = _route_syntax(node, r, where)
        family = net.version
        scope = routing.route_scope(r)
        if r.delete:
            self._delete(r, net, where)
            return
        if r.type is not None:
            from nsbox.model.routes import check_typed_route
            check_typed_route(r, where)
            self._put(_Entry(routing.table_id(r.table), net, routing.route_metric(r), None, scope, False,
                             f"'{routing.route_text(r)}'"))
            return
        if r.dev is not None and r.dev not in node.interfaces:
            raise ValidationError(f"{where}: no device {r.dev} in this node (the kernel: ENODEV)")
        if r.via is None and r.dev is None:
            raise ValidationError(f"{where} needs a gateway or a device (via= or dev=; the kernel: ENODEV)")
        if r.dev is not None and not self._up(r.dev):
            raise ValidationError(f"{where}: through {r.dev}, which is left down (the kernel refuses a route "
                                  f"through a device that is not up: ENETDOWN)")
        if r.src is not None:
            self._check_src(r, where)
        if r.via is not None:
            gw = ipaddress.ip_address(r.via)
            if scope == routing.SCOPES["host"]:
                raise ValidationError(f"{where}: a route with scope host cannot have a gateway (the kernel: EINVAL)")
            if r.onlink:
                self._check_onlink(r, gw, scope, where)
            else:
                self._check_gateway(r, gw, scope, family, where)
        elif r.onlink:
            pass  # onlink without a gateway: the kernel ignores the flag
        table = routing.table_id(r.table)
        self._put(_Entry(table, net, routing.route_metric(r), r.dev, scope, r.via is not None,
                         f"'{routing.route_text(r)}'"))

    def _delete(self, r: Route, net: IpNet, where: str) -> None:
        """`ip route del`: the first route to NET in the table (out of DEV if given) goes."""
        table = routing.table_id(r.table)
        for e in self.entries:
            if (e.table, e.net) == (table, net) and r.dev in (None, e.dev):
                self.entries.remove(e)
                return
        dev = f" dev {r.dev}" if r.dev else ""
        raise ValidationError(f"{where}: `ip route del {r.dst}{dev}` finds no such route (no address's prefix "
                              f"route nor a route declared before it; the kernel: ESRCH, no such process)")

    def _check_src(self, r: Route, where: str) -> None:
        src = ipaddress.ip_address(r.src)
        if src not in self.local and not (src.version == 4 and src in self.loopback[0]) \
                and src != self.loopback[1]:
            raise ValidationError(f"{where}: src {r.src} is no address of this node "
                                  f"(the kernel: EINVAL, invalid prefsrc address)")

    def _check_onlink(self, r: Route, gw: IpAddr, scope: int, where: str) -> None:
        if r.dev is None:
            raise ValidationError(f"{where}: onlink needs a device (dev) (the kernel: EINVAL, "
                                  f"nexthop device required for onlink)")
        if scope >= routing.SCOPES["link"]:
            raise ValidationError(f"{where}: onlink with scope {r.scope} (the kernel: EINVAL, nexthop has "
                                  f"invalid scope)")
        if gw.version == 4 and (gw in self.local or gw in self.broadcast or gw in self.loopback[0]):
            raise ValidationError(f"{where}: onlink gateway {gw} is a local or broadcast address of this "
                                  f"node (the kernel: EINVAL, nexthop has invalid gateway)")

    def _check_gateway(self, r: Route, gw: IpAddr, scope: int, family: int, where: str) -> None:
        if gw.version != family:
            raise ValidationError(f"{where}: gateway {gw} is not of the route's address family")
        if gw.version == 6:
            if gw in self.local or gw == self.loopback[1]:
                raise ValidationError(f"{where}: gateway {gw} is an address of this node "
                                      f"(the kernel: EINVAL, gateway can not be a local address)")
            if gw.is_link_local and r.dev is not None:
                return  # fe80::… dev X: on the link by definition
        else:
            # A local gateway resolves to the local route (RTN_LOCAL), which the kernel takes.
            if gw in self.local and r.dev in (None, self.local[gw]):
                return
            if gw in self.broadcast and r.dev in (None, self.broadcast[gw]):
                raise ValidationError(f"{where}: gateway {gw} is the broadcast address of a subnet of "
                                      f"{self.broadcast[gw]} (the kernel: EINVAL, nexthop has invalid gateway)")
        # fib_check_nh: the gateway is looked up in the route's table, then in all;
        # only routes of scope link or narrower (no gateway of their own) count,
        # and with dev given only routes out of that dev.
        table = routing.table_id(r.table)
        if scope < routing.SCOPES["link"]:
            for e in self.entries:
                if e.table in (table, routing.TABLES["main"]) and not e.gateway and gw in e.net \
                        and e.scope >= routing.SCOPES["link"] and r.dev in (None, e.dev):
                    return
        dev = f" out of {r.dev}" if r.dev else ""
        for a in self.node.addresses:
            if not self._up(a.iface) and gw in ipaddress.ip_interface(a.cidr).network:
                raise ValidationError(f"{where}: gateway {gw} is only on a subnet of a device left down "
                                      f"({a.iface}; the kernel: ENETUNREACH, it has no prefix route until up)")
        raise ValidationError(f"{where}: gateway {gw} is reachable through no address or device route{dev} "
                              f"declared before it (the kernel: ENETUNREACH, nexthop has invalid gateway; "
                              f"add e.g. `route('{gw}', dev=…)` first, or onlink=True)")


def _route_syntax(node: Node, r: Route, where: str) -> IpNet:
    """Input `ip` itself would not parse, and the one the kernel refuses on sight."""
    try:
        loose = routing.route_dst(r) if r.dst == "default" else ipaddress.ip_network(r.dst, strict=False)
    except ValueError:
        raise ValidationError(f"node {node.name}: bad route destination {r.dst!r} "
                              f"(a network such as 10.0.0.0/24, or 'default')") from None
    if r.dst != "default" and ipaddress.ip_interface(r.dst).ip != loose.network_address:
        raise ValidationError(f"{where}: host bits set (the kernel: EINVAL, invalid prefix for given prefix "
                              f"length; write {loose})")
    family_net = loose
    for what, value in (("gateway", r.via), ("src", r.src)):
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValidationError(f"{where}: bad {what} {value!r}") from None
    try:
        routing.table_id(r.table)
        if r.scope is not None:
            routing.scope_id(r.scope)
        if r.proto is not None:
            routing.proto_id(r.proto)
    except ValueError as e:
        raise ValidationError(f"{where}: {e}") from None
    if r.metric is not None and not (isinstance(r.metric, int) and 0 <= r.metric < 2**32):
        raise ValidationError(f"{where}: metric {r.metric!r} is not 0-4294967295")
    if not isinstance(r.onlink, bool):
        raise ValidationError(f"{where}: onlink is True or False")
    if r.src is not None and ipaddress.ip_address(r.src).version != family_net.version:
        raise ValidationError(f"{where}: src {r.src} is not of the route's address family")
    return family_net


# -- policy rules --

def _check_rules(node: Node) -> None:
    seen: dict[tuple, PolicyRule] = {}
    for r in node.rules:
        where = f"node {node.name}: rule '{routing.rule_text(r)}'"
        try:
            routing.table_id(r.table)
        except ValueError as e:
            raise ValidationError(f"{where}: {e}") from None
        if r.priority is not None and not (isinstance(r.priority, int) and 0 <= r.priority < 2**32):
            raise ValidationError(f"{where}: priority {r.priority!r} is not 0-4294967295")
        families = set()
        for what, value in (("from", r.src), ("to", r.dst)):
            if value is not None:
                try:
                    # the kernel keeps host bits in a rule's selector (from 10.0.0.1/24)
                    families.add(ipaddress.ip_interface(value).version)
                except ValueError:
                    raise ValidationError(f"{where}: bad {what} {value!r}") from None
        if len(families) > 1:
            raise ValidationError(f"{where}: from and to are of different address families")
        for what, name in (("iif", r.iif), ("oif", r.oif)):
            # The kernel takes a name no interface has yet: the rule waits for it.
            if name is not None and ifname_problem(name):
                raise ValidationError(f"{where}: {what} {ifname_problem(name)}")
        for what, value in (("fwmark", r.fwmark), ("fwmask", r.fwmask)):
            if value is not None and not (isinstance(value, int) and 0 <= value < 2**32):
                raise ValidationError(f"{where}: {what} {value!r} is not 0-0xffffffff")
        if r.fwmask is not None and r.fwmark is None:
            raise ValidationError(f"{where}: fwmask needs a fwmark")
        if r.priority is None:
            continue  # the kernel gives each its own priority: never a duplicate
        key = (routing.rule_family(r), r.priority, r.src, r.dst, r.iif, r.oif, r.fwmark, r.fwmask, r.invert,
               routing.table_id(r.table))
        if key in seen:
            raise ValidationError(f"{where} is declared twice (the kernel: EEXIST)")
        seen[key] = r


# -- neighbour entries --

def _check_neighs(node: Node) -> None:
    seen: set[tuple[str, IpAddr, bool]] = set()
    for n in node.neighs:
        where = f"node {node.name}: neighbour {n.ip} dev {n.dev}"
        try:
            ip = ipaddress.ip_address(n.ip)
        except ValueError:
            raise ValidationError(f"node {node.name}: bad neighbour address {n.ip!r}") from None
        if n.dev not in node.interfaces:
            raise ValidationError(f"{where}: no device {n.dev} in this node (the kernel: ENODEV)")
        if n.state not in routing.NUD:
            raise ValidationError(f"{where}: state {n.state!r} is not one of {', '.join(routing.NUD)}")
        if n.lladdr is not None and not _MAC_RE.match(n.lladdr):
            raise ValidationError(f"{where}: lladdr {n.lladdr!r} is not a MAC address such as 02:42:ac:11:00:02")
        if n.lladdr is None and not n.proxy:
            raise ValidationError(f"{where}: needs an lladdr (the kernel: EINVAL, no link layer address given)")
        if n.proxy and n.lladdr is not None:
            raise ValidationError(f"{where}: a proxy entry takes no lladdr")
        key = (n.dev, ip, n.proxy)
        if key in seen:
            raise ValidationError(f"{where} is declared twice (the kernel: EEXIST)")
        seen.add(key)


# -- forwarding database entries --

def _check_fdbs(node: Node) -> None:
    seen: set[tuple[str, str, bool]] = set()
    for f in node.fdbs:
        where = f"node {node.name}: fdb {f.mac} dev {f.dev}"
        if not _MAC_RE.match(f.mac):
            raise ValidationError(f"{where}: {f.mac!r} is not a MAC address such as 02:42:ac:11:00:02")
        if f.mac.strip("0:") == "":
            raise ValidationError(f"{where}: the all-zero MAC (the kernel: EINVAL)")
        iface = node.interfaces.get(f.dev)
        if iface is None:
            raise ValidationError(f"{where}: no device {f.dev} in this node (the kernel: ENODEV)")
        if f.state not in routing.FDB_STATES:
            raise ValidationError(f"{where}: state {f.state!r} is not one of {', '.join(routing.FDB_STATES)}")
        if f.master and iface.master is None:
            raise ValidationError(f"{where}: master=True, but {f.dev} is no bridge port (the kernel: EOPNOTSUPP; "
                                  f"master=False writes the device's own table)")
        # The device's own table (self): only vxlan takes static/dynamic entries; a
        # bridge (its own entries) and every other device (its unicast list) want permanent.
        if not f.master and iface.kind != "vxlan" and f.state != "permanent":
            raise ValidationError(f"{where}: an entry in the {iface.kind} device's own table (master=False) "
                                  f"must be state='permanent' (the kernel: EINVAL)")
        if f.vlan is not None:
            raise ValidationError(f"{where}: vlan needs a VLAN-filtering bridge, and nsbox builds none yet "
                                  f"(the kernel: EINVAL)")
        if f.dst is not None:
            try:
                ipaddress.ip_address(f.dst)
            except ValueError:
                raise ValidationError(f"{where}: bad dst {f.dst!r}") from None
        key = (f.dev, f.mac.lower(), f.master)
        if key in seen:
            raise ValidationError(f"{where} is declared twice (the kernel: EEXIST)")
        seen.add(key)


# -- per-interface sysctls --

def _check_iface_sysctls(node: Node) -> None:
    """net.ipv4.conf.IFACE.* exists only for an interface of the node (sysctl: ENOENT).
    They are written once every link exists (plan/steps.py), so any of the node's
    interfaces may be named."""
    for key in node.sysctls:
        m = _PER_IFACE_SYSCTL.match(key)
        if not m or m.group(1) in ("all", "default"):
            continue
        name = m.group(1).replace("/", ".")  # sysctl(8) writes a dot in a name as '/'
        if name not in node.interfaces:
            raise ValidationError(f"node {node.name}: sysctl {key} names interface {name}, which this node "
                                  f"does not have (the kernel: no such key)")
