"""Read a namespace's conntrack table over ctnetlink, like `conntrack -L`.

The socket is a plain NETLINK_NETFILTER socket opened after entering the
namespace, so it is bound there. Not pyroute2's Conntrack(): in 0.9 it either
opens its socket on another thread (which stays in the caller's netns) or, with
netns=..., forks a helper process; that helper inherited nsbox's signal
handlers and could unwind a copy of nsbox, tearing the lab down under it.
nsbox/wire/ctnetlink.py encodes the request and decodes the replies, IPv4 and
IPv6 alike (nfgen_family AF_INET6 selects the IPv6 table, as `conntrack -L -f
ipv6` does; CTA_IP_V6_* and the ICMPv6 tuple).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from nsbox.errors import KernelError
from nsbox.host import netns
from nsbox.wire import ctnetlink

NETLINK_NETFILTER = 12
NLMSG_ERROR, NLMSG_DONE = ctnetlink.NLMSG_ERROR, ctnetlink.NLMSG_DONE
_HDR = ctnetlink.HDR
_PROTO = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp",
          socket.IPPROTO_ICMPV6: "icmpv6"}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int | None
    dport: int | None
    icmp: tuple[int, int, int] | None = None  # icmp/icmpv6: (type, code, id)

    def render(self) -> str:
        """As conntrack-tools prints a tuple: addresses in inet_ntop's form (IPv6
        compressed), then ports, or type/code/id for ICMP."""
        l4 = (f"type={self.icmp[0]} code={self.icmp[1]} id={self.icmp[2]}" if self.icmp is not None
              else f"sport={self.sport} dport={self.dport}")
        return f"src={self.src} dst={self.dst} {l4}"


@dataclass(frozen=True)
class Entry:
    proto: str
    orig: Tuple
    reply: Tuple
    state: str | None  # TCP state, e.g. ESTABLISHED

    def render(self) -> str:
        return " ".join(p for p in (self.proto, self.state, self.orig.render(), self.reply.render()) if p)


def dump(path: str, family: int = socket.AF_INET) -> list[Entry]:
    """All entries of FAMILY (AF_INET, AF_INET6, or 4 / 6) in the namespace pinned at PATH."""
    family = FAMILIES.get(family, family)
    sock = netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        sock.sendall(ctnetlink.dump_request(family))
        return [_entry(m) for m in _replies(sock)]
    finally:
        sock.close()


def _replies(sock: socket.socket):
    while True:
        data = sock.recv(1 << 20)
        off = 0
        while off + _HDR.size <= len(data):
            length, msg_type, _, _, _ = _HDR.unpack_from(data, off)
            if msg_type == NLMSG_DONE:
                return
            if msg_type == NLMSG_ERROR:
                err = -struct.unpack_from("=i", data, off + _HDR.size)[0]
                if err:
                    raise KernelError(f"conntrack dump: {os.strerror(err)}")
                return
            yield ctnetlink.entry(data[off:off + length])
            off += (length + 3) & ~3


def _tuple(t: ctnetlink.RawTuple) -> Tuple:
    return Tuple(_ntop(t.src), _ntop(t.dst), t.sport, t.dport, t.icmp)


def _ntop(ip: str) -> str:
    """The address in conntrack-tools' (inet_ntop's) form: IPv6 compressed, lower case."""
    return str(ipaddress.ip_address(ip))


def _entry(raw: ctnetlink.RawEntry) -> Entry:
    state = ctnetlink.TCP_STATES.get(raw.tcp_state, "UNKNOWN") if raw.orig.proto == socket.IPPROTO_TCP else None
    return Entry(_PROTO.get(raw.orig.proto, str(raw.orig.proto)), _tuple(raw.orig), _tuple(raw.reply), state)
