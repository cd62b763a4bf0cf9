"""link: an interface's operational state (IFLA_OPERSTATE, what `ip link` prints after `state`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.errors import ValidationError
from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab


@dataclass(frozen=True)
class LinkCheck:
    """IFACE of NODE is in operational state STATE ("UP", "DOWN", "LOWERLAYERDOWN", ...),
    read from the kernel (IFLA_OPERSTATE, what `ip link` prints after `state`)."""

    name: str
    node: str
    iface: str
    state: str

    @property
    def expected(self) -> str:
        return f"state {self.state}"


def expect_link(lab: Lab, node: Any, iface: str, state: str = "UP", name: str | None = None) -> LinkCheck:
    """lab.expect_link (documented there)."""
    n = node if isinstance(node, str) else node.name
    check = LinkCheck(name=name or f"link {n}/{iface} {state}", node=n, iface=iface, state=state)
    lab._add_check(check)
    return check


def validate(lab: Lab, c: LinkCheck, reach: dict[str, Any]) -> None:
    from nsbox.model import linkopts

    if c.node not in lab.nodes or c.iface not in lab.nodes[c.node].interfaces:
        raise ValidationError(f"check {c.name!r}: {c.iface} is no interface of node {c.node!r}")
    if c.state not in linkopts.OPERSTATES:
        raise ValidationError(f"check {c.name!r}: unknown link state {c.state!r} "
                              f"({', '.join(linkopts.OPERSTATES)})")


def run(v: Verification, checks: list[LinkCheck]) -> dict[str, CheckResult]:
    return {c.name: _run(v.built, c, v.timing) for c in checks}


def _run(built, c: LinkCheck, timing) -> CheckResult:
    """Read IFACE's operstate from the kernel; re-read while it differs, within the
    deadline: carrier changes reach operstate through the kernel's linkwatch, up to
    a second later."""
    from nsbox import retry
    from nsbox.observe.links import operstate

    tried = retry.until(lambda: operstate(built.path(c.node), c.iface), lambda state: state == c.state,
                        within=timing.deadline, every=timing.interval, reserve=timing.interval)
    state = tried.value
    return CheckResult(c.name, "link", c.expected, f"state {state}", tried.ok,
                       f"{c.node}: {c.iface} operstate {state}", tried.attempts,
                       round(tried.seconds * 1000, 1), node=c.node)


KIND = register(CheckKind("link", LinkCheck, validate, run, lambda lab, c: [c.node],
                          builder="expect_link", build=expect_link))
