"""route: NODE's own routing lookup (`ip route get DST`, RTM_GETROUTE) sends DST where the
recipe says (via, dev, src, route type). Builder: lab.expect_route."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nsbox.errors import ValidationError
from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab, Node


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


def run_route(built, c: RouteCheck) -> CheckResult:
    from nsbox.observe.routeget import route_get

    start = time.monotonic()
    got = route_get(built.path(c.node), c.dst)
    ok = got.route_type == c.route_type
    if c.via is not None:
        ok = ok and got.via == c.via
    if c.direct:
        ok = ok and got.via is None
    if c.dev is not None:
        ok = ok and got.dev == c.dev
    if c.src is not None:
        ok = ok and got.src == c.src
    # Observed in the expectation's own words: only what the check judges.
    observed = got.words() if got.error else " ".join(
        [got.route_type]
        + ((["via", got.via] if got.via else ["direct"]) if (c.via is not None or c.direct) else [])
        + (["dev", got.dev or "-"] if c.dev is not None else [])
        + (["src", got.src or "-"] if c.src is not None else []))
    return CheckResult(c.name, "route", c.expected, observed, ok,
                       f"{c.node}: ip route get {c.dst} -> {got.words()}",
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=c.node)


def run(v: Verification, checks: list[RouteCheck]) -> dict[str, CheckResult]:
    return {c.name: run_route(v.built, c) for c in checks}


KIND = register(CheckKind("route", RouteCheck, lambda lab, c, reach: validate_route_check(lab, c), run,
                          lambda lab, c: [c.node], builder="expect_route", build=expect_route))
