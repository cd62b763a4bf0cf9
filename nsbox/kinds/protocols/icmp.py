"""icmp: an echo request (ping), expect the echo reply; no port, no server (the kernel answers).

Options: size= (the IP packet's bytes, header included, as an MTU counts it) and
df= (don't fragment): a df probe of SIZE passes a path whose MTU is at least SIZE
and fails a smaller one with EMSGSIZE, as `ping -M do -s` does."""

from __future__ import annotations

import os
import socket
import struct

from nsbox.errors import ValidationError
from nsbox.kinds.protocols import Protocol, register

IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DONT = 10, 2, 0  # <linux/in.h>
IPV6_MTU_DISCOVER, IPV6_DONTFRAG = 23, 62  # <linux/in6.h>


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe(src, ip, port, timeout, token, opts):
    import time

    from nsbox.verify import probes as P

    size, df = opts.size, opts.df
    v6 = ":" in ip
    ident = os.getpid() & 0xFFFF ^ int(token[:4], 16)
    payload = token.encode()
    if size is not None:  # the IP packet: 20 (IPv4) or 40 (IPv6) bytes of header, 8 of ICMP, the rest payload
        payload = payload.ljust(max(len(payload), size - (48 if v6 else 28)), b"x")
    req_type, reply_type = (128, 129) if v6 else (8, 0)
    header = struct.pack("!BBHHH", req_type, 0, 0, ident, 1)
    packet = header + payload
    if not v6:  # the kernel computes the ICMPv6 checksum itself
        packet = struct.pack("!BBHHH", req_type, 0, _checksum(packet), ident, 1) + payload
    try:
        with P.sock(src, P.family(ip), socket.SOCK_RAW,
                    socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP) as s:
            if size is not None or df:
                # DF set and never fragmented here: a packet over the route's MTU fails with
                # EMSGSIZE, as `ping -M do` does; without df the kernel may fragment it
                if v6:
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT)
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1 if df else 0)
                else:
                    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT)
            s.sendto(packet, (ip, 0))
            deadline = time.monotonic() + timeout
            while True:
                data, addr = yield from P.recvfrom(s, deadline)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                typ, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if typ == reply_type and rid == ident and addr[0] == ip:
                    return P.ProbeResult(True, "echo reply", token, icmp_id=ident)
                if typ in ((1,) if v6 else (3,)) and payload in icmp:  # destination unreachable
                    code = icmp[1]
                    return P.ProbeResult(False, f"icmp unreachable (type {typ} code {code} from {addr[0]})", token,
                                         kind=P.icmp_kind(v6, typ, code), icmp_id=ident)
    except OSError as e:
        r = P.error(e, token)
        r.icmp_id = ident
        return r


def check(lab, c, where: str) -> None:
    if c.size is None and not c.df:
        return
    low = 48 if ":" in lab.target(c.src, c.dst, c.proto, c.port, c.family).ip else 28
    if type(c.df) is not bool or (c.size is not None and not (type(c.size) is int and low <= c.size <= 65535)):
        raise ValidationError(f"{where}: size= (bytes of the IP packet, {low}-65535) and "
                              f"df=True|False are for icmp checks, not {c.proto} size={c.size!r}")


PROTOCOL = register(Protocol(
    name="icmp", transport=None, summary="an echo request, expect the echo reply (the kernel answers)",
    probe=probe, options=frozenset({"size", "df"}), check=check, records_peer=False))
