"""interfaces: a netns holds exactly the interfaces named (a --network none container: lo alone)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab


@dataclass(frozen=True)
class InterfacesCheck:
    """The netns of NODE (a node or a container) holds exactly the interfaces NAMES: what
    `ip link` lists there (a --network none container: lo alone)."""

    name: str
    node: str
    names: tuple[str, ...]

    @property
    def expected(self) -> str:
        return "interfaces " + ", ".join(sorted(self.names))


def expect_interfaces(lab: Lab, node: Any, names: list[str], name: str | None = None) -> InterfacesCheck:
    """lab.expect_interfaces (documented there)."""
    from nsbox.model.lab import _name

    n = _name(node)
    check = InterfacesCheck(name=name or f"interfaces of {n}", node=n, names=tuple(sorted(names)))
    lab._add_check(check)
    return check


def validate(lab: Lab, c: InterfacesCheck, reach: dict[str, Any]) -> None:
    from nsbox.validate import check_ifname

    lab.netns_of(c.node)
    for n in c.names:
        check_ifname(n, f"check {c.name!r}")


def run(v: Verification, checks: list[InterfacesCheck]) -> dict[str, CheckResult]:
    return {c.name: _run(v.built, c) for c in checks}


def _run(built, c: InterfacesCheck) -> CheckResult:
    """List the netns's interfaces with if_nameindex(3) from inside it (netlink in that netns)."""
    import socket

    from nsbox.host import netns

    start = time.monotonic()
    node = built.lab.netns_of(c.node).name
    with netns.entered(built.path(node)):
        found = sorted(name for _, name in socket.if_nameindex())
    observed = "interfaces " + ", ".join(found)
    return CheckResult(c.name, "interfaces", c.expected, observed, observed == c.expected,
                       f"{c.node}: netns {node} has {len(found)} interface(s)",
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node)


KIND = register(CheckKind("interfaces", InterfacesCheck, validate, run,
                          lambda lab, c: [lab.netns_of(c.node).name],
                          builder="expect_interfaces", build=expect_interfaces))
