"""Route kinds the CNI layouts need beyond unicast, and the check that a node's own
routing lookup (`ip route get`) sends a destination where a recipe says.

Kept apart from lab.py so the additions stay local: the typed-route rules the
kernel applies (fib_create_info), and RouteCheck with its builder `expect_route`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nsbox.errors import ValidationError

if TYPE_CHECKING:
    from nsbox.model.lab import Lab, Node, Route

ROUTE_TYPES = ("blackhole", "unreachable", "prohibit")


def check_typed_route(r: Route, where: str) -> None:
    """`ip route add blackhole|unreachable|prohibit DST`: the kernel refuses a gateway or a
    device on them (EINVAL, "Gateway, device and multipath can not be specified for this
    route type")."""
    if r.type not in ROUTE_TYPES:
        raise ValidationError(f"{where}: route type {r.type!r} is not one of {', '.join(ROUTE_TYPES)}")
    if r.via is not None or r.dev is not None or r.onlink:
        raise ValidationError(f"{where}: a {r.type} route takes no gateway, device or onlink (the kernel: "
                              f"EINVAL, gateway, device and multipath can not be specified for this route type)")


@dataclass(frozen=True)
class RouteCheck:
    """NODE's kernel routes DST (`ip route get DST [from SRC_FROM]`, RTM_GETROUTE) out of DEV,
    via gateway VIA (None: expect a direct route, "no gateway"), with source SRC; unset
    fields (DEV, SRC) are not judged. ROUTE_TYPE: the route type the lookup must end in
    (unicast, local, blackhole, unreachable, prohibit)."""

    name: str
    node: str
    dst: str
    via: str | None = None
    dev: str | None = None
    src: str | None = None
    route_type: str = "unicast"
    direct: bool = False  # via=None judged as "no gateway" only when True

    @property
    def expected(self) -> str:
        return describe(self.route_type, self.via if (self.via or self.direct) else "", self.dev, self.src)


def describe(rtype: str, via: str | None, dev: str | None, src: str | None) -> str:
    """A route lookup's answer as `ip route get` words: 'unicast via 10.0.0.1 dev eth0 src 10.0.0.2'.
    VIA "" means not judged, None means no gateway."""
    words = [rtype]
    if via is None:
        words.append("direct")
    elif via:
        words += ["via", via]
    if dev:
        words += ["dev", dev]
    if src:
        words += ["src", src]
    return " ".join(words)


def expect_route(lab: Lab, node: Node | str, dst: str, *, via: str | None = None, dev: str | None = None,
                 src: str | None = None, direct: bool = False, type: str = "unicast",
                 name: str | None = None) -> RouteCheck:
    """NODE's own routing lookup for DST goes via VIA out of DEV with source SRC (judged by the
    kernel: RTM_GETROUTE, what `ip route get DST` prints). direct=True: no gateway (a
    connected or device route). Checked when the lab runs."""
    n = node if isinstance(node, str) else node.name
    check = RouteCheck(name=name or f"route {n}: {dst}", node=n, dst=dst, via=via, dev=dev, src=src,
                       route_type=type, direct=direct)
    validate_route_check(lab, check)
    lab._add_check(check)
    return check


ROUTE_GET_TYPES = ("unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit")


def validate_route_check(lab: Lab, c: RouteCheck) -> None:
    where = f"check {c.name!r}"
    if c.node not in lab.nodes:
        raise ValidationError(f"{where}: no node {c.node!r}")
    for what, value in (("dst", c.dst), ("via", c.via), ("src", c.src)):
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValidationError(f"{where}: {what} {value!r} is no IP address") from None
    if c.dev is not None and c.dev not in lab.nodes[c.node].interfaces:
        raise ValidationError(f"{where}: {c.dev} is no interface of node {c.node!r}")
    if c.route_type not in ROUTE_GET_TYPES:
        raise ValidationError(f"{where}: route type {c.route_type!r} is not one of {', '.join(ROUTE_GET_TYPES)}")
    if c.direct and c.via is not None:
        raise ValidationError(f"{where}: direct=True means no gateway, so no via")


NUD_STATES = ("reachable", "stale", "delay", "probe", "failed", "incomplete", "noarp", "permanent")


@dataclass(frozen=True)
class NeighCheck:
    """NODE's neighbour table (`ip neigh show`, read after the traffic checks ran) holds IP
    on DEV with link-layer address LLADDR and, if given, in STATE. LLADDR=None: only
    that the entry exists and is resolved (not failed/incomplete). PROXY: a proxy entry."""

    name: str
    node: str
    ip: str
    lladdr: str | None = None
    dev: str | None = None
    state: str | None = None

    @property
    def expected(self) -> str:
        words = [f"neighbour {self.ip}"]
        if self.lladdr:
            words.append(f"lladdr {self.lladdr.lower()}")
        if self.dev:
            words.append(f"dev {self.dev}")
        words.append(self.state or "resolved")
        return " ".join(words)


def expect_neigh(lab: Lab, node: Node | str, ip: str, *, lladdr: str | None = None, dev: str | None = None,
                 state: str | None = None, name: str | None = None) -> NeighCheck:
    """NODE's kernel holds a neighbour entry for IP (with LLADDR, on DEV, in STATE), read with
    RTM_GETNEIGH once the traffic checks have run: a pod's entry for Calico's 169.254.1.1
    holds the node veth's MAC, learnt by proxy ARP; flannel's permanent VTEP entries."""
    n = node if isinstance(node, str) else node.name
    check = NeighCheck(name=name or f"neigh {n}: {ip}", node=n, ip=ip, lladdr=lladdr.lower() if lladdr else None,
                       dev=dev, state=state)
    validate_neigh_check(lab, check)
    lab._add_check(check)
    return check


def validate_neigh_check(lab: Lab, c: NeighCheck) -> None:
    import re

    where = f"check {c.name!r}"
    node = lab.netns_of(c.node) if c.node not in lab.nodes else lab.nodes[c.node]
    try:
        ipaddress.ip_address(c.ip)
    except ValueError:
        raise ValidationError(f"{where}: {c.ip!r} is no IP address") from None
    if c.lladdr is not None and not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", c.lladdr):
        raise ValidationError(f"{where}: lladdr {c.lladdr!r} is not a MAC address such as 02:42:ac:11:00:02")
    if c.dev is not None and c.dev not in node.interfaces:
        raise ValidationError(f"{where}: {c.dev} is no interface of node {node.name!r}")
    if c.state is not None and c.state not in NUD_STATES:
        raise ValidationError(f"{where}: state {c.state!r} is not one of {', '.join(NUD_STATES)}")
