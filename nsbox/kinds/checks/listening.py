"""listening: a socket in NODE's netns listens on PROTO/PORT (optionally on ADDRESS), or none
does (listening=False) -- read from the kernel's socket tables of that netns.

    lab.expect_listening(node, "tcp", 10250)                      # the kubelet's port is open
    lab.expect_listening(node, "udp", 53, address="169.254.20.10")  # NodeLocal DNSCache's bind
    lab.expect_listening(pod, "tcp", 8080, listening=False)       # nothing serves it here

What Kubernetes labs need it for: a hostNetwork pod's server listens in the node's netns
and not in a pod's; a hostPort is published by rules, so nothing listens on it; a node-local
DNS cache binds one link-local address, not the wildcard. Judged from the kernel: a tcp
socket in LISTEN state, a udp socket bound and unconnected; a wildcard bind (0.0.0.0, ::)
listens on every address, so it satisfies an ADDRESS (a `::` socket also takes IPv4 unless
it is v6-only, which the tables do not show).

The tables are /proc/thread-self/net/{tcp,tcp6,udp,udp6} read by a thread inside the netns
(the kernel shows the reading thread's netns there), the same sockets `ss -ltnu` lists
through sock_diag: the kernel test compares the two.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nsbox.errors import ValidationError
from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab

TCP_LISTEN, UDP_UNCONNECTED = "0A", "07"  # include/net/tcp_states.h: TCP_LISTEN 10, TCP_CLOSE 7


@dataclass(frozen=True)
class ListeningCheck:
    name: str
    node: str  # a node or a container (its netns)
    proto: Literal["tcp", "udp"]
    port: int
    address: str | None = None  # None: any address
    listening: bool = True      # False: no socket listens there

    @property
    def expected(self) -> str:
        where = f"{self.proto} {self.address}:{self.port}" if self.address else f"{self.proto}/{self.port}"
        return f"listening on {where}" if self.listening else f"nothing listening on {where}"


def expect_listening(lab: Lab, node: Any, proto: Literal["tcp", "udp"], port: int, *, address: str | None = None,
                     listening: bool = True, name: str | None = None) -> ListeningCheck:
    """NODE's netns (a node or a container's) has a socket listening on PROTO/PORT, on ADDRESS
    if given (a wildcard bind counts); listening=False: no socket listens there. Read from
    the kernel when the lab runs, after the traffic checks."""
    n = getattr(node, "name", node)
    check = ListeningCheck(name=name or f"{'' if listening else 'no '}{proto}/{port} listening in {n}",
                           node=n, proto=proto, port=port, address=address, listening=listening)
    validate(lab, check, {})
    lab._add_check(check)
    return check


def validate(lab: Lab, c: ListeningCheck, reach: dict[str, Any]) -> None:
    where = f"check {c.name!r}"
    if not isinstance(c.node, str):
        raise ValidationError(f"{where}: the node is a node or container, not {type(c.node).__name__}")
    lab.netns_of(c.node)
    if c.proto not in ("tcp", "udp"):
        raise ValidationError(f"{where}: a listening socket is tcp or udp, not {c.proto!r}")
    if not (type(c.port) is int and 1 <= c.port <= 65535):
        raise ValidationError(f"{where}: port {c.port!r} out of range 1-65535")
    if c.address is not None:
        try:
            ipaddress.ip_address(c.address)
        except (ValueError, TypeError):
            raise ValidationError(f"{where}: address {c.address!r} is no IP address") from None
    if type(c.listening) is not bool:
        raise ValidationError(f"{where}: listening is True or False, not {c.listening!r}")


@dataclass(frozen=True)
class Socket:
    proto: str  # tcp, udp
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.proto} {f'[{self.ip}]' if ':' in self.ip else self.ip}:{self.port}"


def parse_table(proto: str, text: str, v6: bool) -> list[Socket]:
    """The listening sockets of one /proc/net/{tcp,udp}[6] table: tcp in LISTEN, udp bound and
    unconnected. Addresses are hex in the kernel's byte order, 32 bits at a time."""
    want = TCP_LISTEN if proto == "tcp" else UDP_UNCONNECTED
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4 or f[3] != want:
            continue
        hexip, _, hexport = f[1].partition(":")
        raw = bytes.fromhex(hexip)
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host order
        out.append(Socket(proto, str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return out


def sockets(path: str, proto: str) -> list[Socket]:
    """The listening PROTO sockets of the netns at PATH."""
    from nsbox.host import netns

    found: list[Socket] = []
    with netns.entered(path):
        for suffix, v6 in (("", False), ("6", True)):
            try:
                with open(f"/proc/thread-self/net/{proto}{suffix}") as f:
                    found += parse_table(proto, f.read(), v6)
            except FileNotFoundError:  # no IPv6 in this kernel
                continue
    return found


def matches(s: Socket, c: ListeningCheck) -> bool:
    if s.proto != c.proto or s.port != c.port:
        return False
    if c.address is None:
        return True
    ip = ipaddress.ip_address(s.ip)
    want = ipaddress.ip_address(c.address)
    if ip.is_unspecified:  # 0.0.0.0 takes every IPv4 address; :: every address (unless v6-only)
        return ip.version == want.version or ip.version == 6
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip == want


def run(v: Verification, checks: list[ListeningCheck]) -> dict[str, CheckResult]:
    return {c.name: _run(v.built, c) for c in checks}


def _run(built: Any, c: ListeningCheck) -> CheckResult:
    start = time.monotonic()
    node = built.lab.netns_of(c.node).name
    found = sockets(built.path(node), c.proto)
    hits = [s for s in found if matches(s, c)]
    where = f"{c.proto} {c.address}:{c.port}" if c.address else f"{c.proto}/{c.port}"
    observed = f"listening on {where}" if hits else f"nothing listening on {where}"
    on_port = sorted({str(s) for s in found if s.port == c.port})
    detail = (f"{c.node}: netns {node}: {c.proto} sockets listening on port {c.port}: "
              f"{', '.join(on_port) or 'none'} ({len(found)} listening {c.proto} socket(s) in all)")
    return CheckResult(c.name, "listening", c.expected, observed, observed == c.expected, detail,
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node, proto=c.proto,
                       port=c.port)


KIND = register(CheckKind("listening", ListeningCheck, validate, run, lambda lab, c: [lab.netns_of(c.node).name],
                          builder="expect_listening", build=expect_listening))
