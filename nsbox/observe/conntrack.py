"""Read a namespace's conntrack table over ctnetlink, like `conntrack -L`.

The socket is a plain NETLINK_NETFILTER socket opened after entering the
namespace, so it is bound there. Not pyroute2's Conntrack(): in 0.9 it either
opens its socket on another thread (which stays in the caller's netns) or, with
netns=..., forks a helper process; that helper inherited nsbox's signal
handlers and could unwind a copy of nsbox, tearing the lab down under it.
pyroute2 still decodes the messages, IPv4 and IPv6 alike (nfgen_family AF_INET6
selects the IPv6 table, as `conntrack -L -f ipv6` does; its decoder reads
CTA_IP_V6_* and the ICMPv6 tuple).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from pyroute2.conntrack import ConntrackEntry
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_GET, nfct_msg

from nsbox.errors import KernelError
from nsbox.host import netns

NETLINK_NETFILTER = 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
_HDR = struct.Struct("=IHHII")
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
        req = nfct_msg()
        req["nfgen_family"] = family
        req["header"]["type"] = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
        req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        req["header"]["sequence_number"] = 1
        req.encode()
        sock.sendall(req.data)
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
            msg = nfct_msg(data[off:off + length])
            msg.decode()
            yield msg
            off += (length + 3) & ~3


def _tuple(t) -> Tuple:
    icmp = None
    if t.proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
        icmp = (t.icmp_type, t.icmp_code, t.icmp_id)
    return Tuple(_ntop(t.saddr), _ntop(t.daddr), t.sport, t.dport, icmp)


def _ntop(ip) -> str:
    """The address in conntrack-tools' (inet_ntop's) form: IPv6 compressed, lower case."""
    return str(ipaddress.ip_address(str(ip)))


def _entry(msg) -> Entry:
    e = ConntrackEntry(msg["nfgen_family"], msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY"),
                       msg.get_attr("CTA_STATUS"), msg.get_attr("CTA_TIMEOUT"), msg.get_attr("CTA_PROTOINFO"),
                       msg.get_attr("CTA_MARK"), msg.get_attr("CTA_ID"), msg.get_attr("CTA_USE"),
                       msg.get_attr("CTA_ZONE"))
    state = e.protoinfo.state_name() if e.protoinfo is not None else None
    return Entry(_PROTO.get(e.tuple_orig.proto, str(e.tuple_orig.proto)), _tuple(e.tuple_orig),
                 _tuple(e.tuple_reply), state)
