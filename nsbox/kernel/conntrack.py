"""Read a namespace's conntrack table over ctnetlink (pyroute2)."""

from __future__ import annotations

import socket
from dataclasses import dataclass


_PROTO = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp"}


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int | None
    dport: int | None


@dataclass(frozen=True)
class Entry:
    proto: str
    orig: Tuple
    reply: Tuple
    state: str | None  # TCP state, e.g. ESTABLISHED

    def render(self) -> str:
        def t(x: Tuple) -> str:
            return f"src={x.src} dst={x.dst} sport={x.sport} dport={x.dport}"
        return f"{self.proto} {self.state or ''} {t(self.orig)} {t(self.reply)}".replace("  ", " ")


def dump(path: str) -> list[Entry]:
    """All entries of the namespace pinned at PATH (like `conntrack -L`)."""
    from pyroute2 import Conntrack

    # Not setns + Conntrack(): pyroute2 0.9 opens this socket on another thread,
    # which stays in the caller's netns. Conntrack(netns=...) enters it itself.
    ct = Conntrack(netns=path)
    try:
        return [_entry(e) for e in ct.dump_entries()]
    finally:
        ct.close()


def _tuple(t) -> Tuple:
    return Tuple(str(t.saddr), str(t.daddr), t.sport, t.dport)


def _entry(e) -> Entry:
    state = None
    if e.protoinfo is not None:
        state = getattr(e.protoinfo, "state_name", lambda: None)() if callable(
            getattr(e.protoinfo, "state_name", None)) else None
    return Entry(_PROTO.get(e.tuple_orig.proto, str(e.tuple_orig.proto)), _tuple(e.tuple_orig),
                 _tuple(e.tuple_reply), state)
