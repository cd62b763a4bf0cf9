"""ctnetlink's dump request and reply messages, as bytes: what `conntrack -L` sends and reads.

Hand-written rather than pyroute2's nfct_msg: importing pyroute2.netlink.nfnetlink
pulls in pyroute2's netlink core and asyncio, ~27 ms of a ~0.3 s `nsbox run bridge-mode`,
for a dozen attributes. The constants are those of linux/netfilter/nfnetlink_conntrack.h.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET = 1, 1
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO = 1, 2, 4
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP = (4, 5, 6)  # id, type, code
CTA_PROTO_ICMPV6 = (7, 8, 9)
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1

HDR = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian, 0 here)
_NLA = struct.Struct("=HH")

# include/uapi/linux/netfilter/nf_conntrack_tcp.h, named as conntrack-tools prints them
TCP_STATES = {1: "SYN_SENT", 2: "SYN_RECV", 3: "ESTABLISHED", 4: "FIN_WAIT", 5: "CLOSE_WAIT", 6: "LAST_ACK",
              7: "TIME_WAIT", 8: "CLOSE", 9: "LISTEN", 10: "MAX", 11: "IGNORE", 12: "RETRANS", 13: "UNACK",
              14: "TIMEOUT_MAX"}


@dataclass(frozen=True)
class RawTuple:
    src: str
    dst: str
    proto: int
    sport: int | None
    dport: int | None
    icmp: tuple[int, int, int] | None  # (type, code, id)


@dataclass(frozen=True)
class RawEntry:
    family: int
    orig: RawTuple
    reply: RawTuple
    tcp_state: int | None


def dump_request(family: int, seq: int = 1) -> bytes:
    """IPCTNL_MSG_CT_GET with NLM_F_DUMP: every entry of FAMILY (AF_INET or AF_INET6)."""
    body = _NFGEN.pack(family, 0, 0)
    return HDR.pack(HDR.size + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                    NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def attrs(data: bytes | memoryview, off: int = 0, end: int | None = None) -> dict[int, memoryview]:
    """The netlink attributes in DATA[OFF:END], by type (flags masked off; the last wins)."""
    view = memoryview(data)
    end = len(view) if end is None else end
    out: dict[int, memoryview] = {}
    while off + _NLA.size <= end:
        length, kind = _NLA.unpack_from(view, off)
        if length < _NLA.size:
            break
        out[kind & NLA_TYPE_MASK] = view[off + _NLA.size:off + length]
        off += (length + 3) & ~3
    return out


def entry(message: bytes | memoryview) -> RawEntry:
    """One IPCTNL_MSG_CT_NEW message of a dump (nlmsghdr included), decoded."""
    view = memoryview(message)
    family = view[HDR.size]
    top = attrs(view, HDR.size + _NFGEN.size, HDR.unpack_from(view)[0])
    tcp_state = None
    if CTA_PROTOINFO in top:
        tcp = attrs(top[CTA_PROTOINFO]).get(CTA_PROTOINFO_TCP)
        if tcp is not None and CTA_PROTOINFO_TCP_STATE in (inner := attrs(tcp)):
            tcp_state = inner[CTA_PROTOINFO_TCP_STATE][0]
    return RawEntry(family, _tuple(family, top[CTA_TUPLE_ORIG]), _tuple(family, top[CTA_TUPLE_REPLY]), tcp_state)


def _tuple(family: int, data: memoryview) -> RawTuple:
    parts = attrs(data)
    ip, l4 = attrs(parts[CTA_TUPLE_IP]), attrs(parts[CTA_TUPLE_PROTO])
    src_key, dst_key = (CTA_IP_V6_SRC, CTA_IP_V6_DST) if family == socket.AF_INET6 else (CTA_IP_V4_SRC, CTA_IP_V4_DST)
    proto = l4[CTA_PROTO_NUM][0]
    icmp = None
    keys = CTA_PROTO_ICMP if proto == socket.IPPROTO_ICMP else CTA_PROTO_ICMPV6 if proto == socket.IPPROTO_ICMPV6 else None
    if keys is not None:
        id_, type_, code = (l4.get(k) for k in keys)
        icmp = (type_[0] if type_ else 0, code[0] if code else 0, _be16(id_))
    return RawTuple(socket.inet_ntop(family, bytes(ip[src_key])), socket.inet_ntop(family, bytes(ip[dst_key])),
                    proto, _be16(l4.get(CTA_PROTO_SRC_PORT)) if icmp is None and CTA_PROTO_SRC_PORT in l4 else None,
                    _be16(l4.get(CTA_PROTO_DST_PORT)) if icmp is None and CTA_PROTO_DST_PORT in l4 else None, icmp)


def _be16(value: memoryview | None) -> int:
    return int.from_bytes(value[:2], "big") if value is not None and len(value) >= 2 else 0
