"""bind: a container cannot listen on a port another server of its netns holds (EADDRINUSE),
as a second `docker run --network host` on a taken port."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nsbox.errors import ValidationError
from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab


@dataclass(frozen=True)
class BindCheck:
    """CONTAINER cannot listen on PROTO/PORT because HELD_BY's server already does in the same
    netns (the kernel's EADDRINUSE): a second `docker run --network host` on a taken port."""

    name: str
    container: str
    proto: Literal["tcp", "udp"]
    port: int
    held_by: str

    @property
    def expected(self) -> str:
        return f"port taken by {self.held_by}"


def expect_port_conflict(lab: Lab, container: Any, proto: Literal["tcp", "udp"], port: int, held_by: Any,
                         name: str | None = None) -> BindCheck:
    """lab.expect_port_conflict (documented there)."""
    from nsbox.model.lab import _name

    c, h = _name(container), _name(held_by)
    check = BindCheck(name=name or f"{proto}/{port} {c} port conflict", container=c, proto=proto,
                      port=port, held_by=h)
    lab._add_check(check)
    return check


def validate(lab: Lab, c: BindCheck, reach: dict[str, Any]) -> None:
    if c.proto not in ("tcp", "udp") or not (type(c.port) is int and 1 <= c.port <= 65535):
        raise ValidationError(f"check {c.name!r}: a port conflict is on tcp or udp, port 1-65535")
    me, holder = lab.netns_of(c.container), lab.netns_of(c.held_by)
    if me.name != holder.name:
        raise ValidationError(f"check {c.name!r}: {c.container} and {c.held_by} are in different "
                              f"netns ({me.name}, {holder.name}); a port conflicts only within one")
    from nsbox.kinds import protocols

    kinds = protocols.get(c.proto).answers
    if not any(s.port == c.port and s.kind in kinds and holder.server_name(s) == c.held_by
               for s in holder.servers):
        raise ValidationError(f"check {c.name!r}: {c.held_by} serves no {c.proto}/{c.port}")


def run(v: Verification, checks: list[BindCheck]) -> dict[str, CheckResult]:
    return {c.name: _run(v.built, c) for c in checks}


def _run(built, c: BindCheck) -> CheckResult:
    """Try to listen as CONTAINER's server would (wildcard address, SO_REUSEADDR for tcp):
    the kernel must refuse with EADDRINUSE while HELD_BY's server has the port."""
    import errno
    import socket

    from nsbox.host import netns

    start = time.monotonic()
    node = built.lab.netns_of(c.container).name
    s = netns.socket_in(built.path(node), socket.AF_INET, socket.SOCK_DGRAM if c.proto == "udp"
                        else socket.SOCK_STREAM)
    try:
        if c.proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", c.port))
        if c.proto == "tcp":
            s.listen(1)
        observed, detail = "port free", f"{c.container}: listening on {c.proto}/{c.port} worked"
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            observed = f"port taken by {c.held_by}"
            detail = (f"{c.container}: bind {c.proto} 0.0.0.0:{c.port} in netns {node}: "
                      f"EADDRINUSE (Address already in use); {c.held_by}'s server holds it")
        else:
            observed, detail = f"bind failed: {e.strerror}", f"{c.container}: {e}"
    finally:
        s.close()
    return CheckResult(c.name, "bind", c.expected, observed, observed == c.expected, detail,
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node,
                       proto=c.proto, port=c.port)


KIND = register(CheckKind("bind", BindCheck, validate, run, lambda lab, c: [lab.netns_of(c.container).name],
                          builder="expect_port_conflict", build=expect_port_conflict))
