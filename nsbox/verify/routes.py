"""expect_route: judge a node's routing by the kernel's own lookup (RTM_GETROUTE)."""

from __future__ import annotations

import time

from nsbox.observe.routeget import route_get
from nsbox.model.routes import RouteCheck
from nsbox.verify.results import CheckResult


def run_route(built, c: RouteCheck) -> CheckResult:
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


def run_neigh(built, c) -> CheckResult:
    """Read NODE's neighbour table (RTM_GETNEIGH dump) after the traffic checks."""
    from nsbox.observe.routeget import neighbours

    start = time.monotonic()
    node = built.lab.netns_of(c.node).name
    found = [n for n in neighbours(built.path(node)) if n.ip == c.ip and not n.proxy
             and (c.dev is None or n.dev == c.dev)]
    ok, observed = False, f"no neighbour entry for {c.ip}"
    for n in found:
        words = [f"neighbour {n.ip}"]
        if c.lladdr:
            words.append(f"lladdr {n.lladdr}")
        if c.dev:
            words.append(f"dev {n.dev}")
        resolved = n.state not in ("failed", "incomplete")
        words.append(n.state if c.state else ("resolved" if resolved else n.state))
        observed = " ".join(words)
        ok = (c.lladdr is None or n.lladdr == c.lladdr) and (n.state == c.state if c.state else resolved)
        if ok:
            break
    detail = "; ".join(f"{n.ip} dev {n.dev} lladdr {n.lladdr} {n.state}" for n in found) or "none"
    return CheckResult(c.name, "neigh", c.expected, observed, ok, f"{c.node}: ip neigh show {c.ip}: {detail}",
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node)
