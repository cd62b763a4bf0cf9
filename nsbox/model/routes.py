"""Route kinds the CNI layouts need beyond unicast: the typed-route rules the kernel
applies (fib_create_info). The checks expect_route and expect_neigh are check kinds
(nsbox/kinds/checks/route.py, neigh.py), re-exported here under their old names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nsbox.errors import ValidationError

if TYPE_CHECKING:
    from nsbox.model.lab import Route

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


# The checks live in their kind modules (nsbox/kinds/checks/route.py, neigh.py); names kept here.
from nsbox.kinds.checks.neigh import NUD_STATES, NeighCheck, expect_neigh, validate_neigh_check  # noqa: E402,F401
from nsbox.kinds.checks.route import (ROUTE_GET_TYPES, RouteCheck, describe, expect_route,  # noqa: E402,F401
                                      validate_route_check)
