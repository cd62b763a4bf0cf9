"""neigh: NODE's neighbour table (RTM_GETNEIGH, read after the traffic checks) holds an
entry for IP (lladdr, dev, state). Builder: lab.expect_neigh."""

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


def run(v: Verification, checks: list[NeighCheck]) -> dict[str, CheckResult]:
    return {c.name: run_neigh(v.built, c) for c in checks}


KIND = register(CheckKind("neigh", NeighCheck, lambda lab, c, reach: validate_neigh_check(lab, c), run,
                          lambda lab, c: [lab.netns_of(c.node).name], builder="expect_neigh", build=expect_neigh))
