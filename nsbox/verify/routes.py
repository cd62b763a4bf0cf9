"""expect_route: judge a node's routing by the kernel's own lookup (RTM_GETROUTE)."""

from __future__ import annotations

import time

from nsbox.kernel.routeget import route_get
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
