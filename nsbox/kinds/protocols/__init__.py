"""Probe protocols, one module each, found by discovery (nsbox.kinds.discover).

A protocol module holds everything about its protocol: its transport (the L4 its
probe and server use, what a virtual port, a capture filter and a conntrack
lookup match on), the check options it takes and their validation, the server
that answers it (socket type and what it does with a request), the probe sent
from a node, and how its result reads (expected / observed). The layers ask this
registry: model builders (lab.target, Server.l4), validation, the verifier, the
servers, the artifacts capture and re-probe, the pytest plugin, the CLI.

A new protocol is one module here (plus its tests): `PROTOCOL = register(Protocol(...))`.
Imports are cheap: the recipe jail imports this package with the model; sockets,
dnslib and the probe helpers are imported by the functions that use them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from nsbox.errors import ValidationError

# IP protocol numbers of the transports (what a capture filter matches on)
TRANSPORTS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}

# ReachCheck fields that only some protocols take, with their "unset" value: a check
# that sets one its protocol does not take is refused.
OPTION_DEFAULTS: dict[str, Any] = {"query": None, "answer": None, "size": None, "df": False}


@dataclass(frozen=True)
class ProbeOptions:
    """What a probe takes beyond source, destination, port and timeout (from the check)."""

    query: str | None = None   # dns: the name asked for
    size: int | None = None    # icmp: the echo's IP packet size
    df: bool = False           # icmp: don't fragment


@dataclass(frozen=True)
class Serving:
    """How the server of a protocol serves (nsbox/verify/servers.py runs it).

    A datagram server handles each request in on_datagram(server, sock, node); a stream
    server accepts, then on_data(server, sock, conn, chunk) is called with what came in.
    `server` offers record(payload, peer, node), write_record(token, peer, node),
    drop(sock) and `zones` (fd -> {name: address}, a dns server's records)."""

    sock_type: int
    ip_proto: int = 0
    on_datagram: Callable[..., None] | None = None
    on_data: Callable[..., None] | None = None

    @property
    def stream(self) -> bool:
        return self.sock_type == socket.SOCK_STREAM


@dataclass(frozen=True)
class Protocol:
    name: str
    transport: str | None                       # "tcp", "udp", "sctp"; None: no ports (icmp)
    summary: str                                # one line: what the probe does and what passes
    probe: Callable[..., Any]                   # (src, ip, port, timeout, token, ProbeOptions) -> Probe task
    answers: tuple[str, ...] = ()               # server kinds that answer its probe (tcp: tcp and http)
    serving: Serving | None = None              # its own server; None: it has none (icmp)
    options: frozenset[str] = frozenset()       # ReachCheck options it takes (of OPTION_DEFAULTS)
    check: Callable[[Any, Any, str], None] | None = None  # (lab, check, where) -> ValidationError
    records_peer: bool = True                   # its server records who asked (seen_from, answered_by)
    plain: bool = True                          # allow/deny probe (no query): deny=, conntrack, plugin
    token_of: Callable[[Any], str] | None = None  # how the server keys a probe's record (default: its token)
    judge: Callable[[Any, Any], tuple[str, bool]] | None = None  # (check, reached ProbeResult) -> (observed, passed)
    expected: Callable[[Any], str] | None = None  # the check's expected text, where allow/deny says too little
    conntrack: bool = True                      # conntrack checks can find its connection
    feature: Callable[[], None] | None = None   # kernel feature probe named after it (raises OSError if missing)
    imports: tuple[str, ...] = ()               # Python modules its probe or server needs (checked before the build)
    kernel_modules: tuple[str, ...] = ()        # loaded first in a --kernel VM, where nsbox cannot autoload them
    aliases: tuple[str, ...] = field(default=())

    @property
    def ip_proto(self) -> int | None:
        return TRANSPORTS[self.transport] if self.transport else None

    @property
    def needs_port(self) -> bool:
        return self.transport is not None


PROTOCOLS: dict[str, Protocol] = {}


def register(p: Protocol) -> Protocol:
    assert p.transport in (None, *TRANSPORTS), f"{p.name}: unknown transport {p.transport!r}"
    assert p.options <= set(OPTION_DEFAULTS), f"{p.name}: unknown options {sorted(p.options - set(OPTION_DEFAULTS))}"
    PROTOCOLS[p.name] = p
    return p


def one_of(items: Any) -> str:
    """"a, b or c": a list of choices in a message."""
    items = list(items)
    return " or ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} or {items[-1]}"


def names() -> tuple[str, ...]:
    """Every protocol, in name order: CLI choices, messages, the plugin's list."""
    return tuple(sorted(PROTOCOLS))


def get(name: Any) -> Protocol:
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ValidationError(f"unknown protocol {name!r} ({', '.join(names())})") from None


def where(pred: Callable[[Protocol], bool]) -> tuple[str, ...]:
    """The names of the protocols PRED holds for, in name order (for lists in messages)."""
    return tuple(n for n in names() if pred(PROTOCOLS[n]))


def server_kinds() -> tuple[str, ...]:
    """Kinds of server a node may run (lab.serve): the protocols that have one."""
    return where(lambda p: p.serving is not None)


def transport_of(name: str) -> str | None:
    """The L4 protocol of a probe of NAME ("tcp", "udp", "sctp"; None for icmp)."""
    return get(name).transport


def features() -> tuple[str, ...]:
    """Kernel features named after a protocol (lab.require("sctp")), probed by the protocol."""
    return where(lambda p: p.feature is not None)


def feature_of(name: str) -> str | None:
    p = PROTOCOLS.get(name)
    return p.name if p is not None and p.feature is not None else None


def check_options(c: Any, where_: str) -> None:
    """The option fields of check C its protocol does not take are unset; then the
    protocol's own validation (lab-independent part)."""
    p = get(c.proto)
    for opt, unset in OPTION_DEFAULTS.items():
        if opt not in p.options and getattr(c, opt, unset) != unset:
            takers = where(lambda q, o=opt: o in q.options)
            theirs = sorted({o for t in takers for o in PROTOCOLS[t].options}, key=list(OPTION_DEFAULTS).index)
            raise ValidationError(f"{where_}: {'= and '.join(theirs)}= are for {'/'.join(takers)} checks, "
                                  f"not {c.proto} ({opt}={getattr(c, opt)!r})")


def kernel_modules() -> tuple[str, ...]:
    """Every protocol's kernel modules (nsbox/vm/guest.py loads them in a --kernel VM)."""
    return tuple(m for n in names() for m in PROTOCOLS[n].kernel_modules)


def imports_for(protocols: set[str]) -> tuple[str, ...]:
    """The Python modules the probes and servers of PROTOCOLS import."""
    return tuple(sorted({m for n in protocols if n in PROTOCOLS for m in PROTOCOLS[n].imports}))


from nsbox.kinds import discover as _discover  # noqa: E402

_discover(__name__)
