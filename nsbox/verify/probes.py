"""Probes: real packets from inside a node, in this process.

The socket is opened while the thread is inside the source namespace and used
after leaving it (a socket stays bound to the netns it was created in). Each
probe carries a unique token so the server can report which source address it
saw for exactly this connection.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
import uuid
from dataclasses import dataclass

from nsbox.kernel import netns
from nsbox.verify.servers import ECHO_PREFIX, TOKEN_HEADER


@dataclass
class ProbeResult:
    reachable: bool
    detail: str  # "connected", "HTTP 200", "timeout", "refused", ...
    token: str
    local: tuple[str, int] | None = None  # the source address/port the probe used
    body: str | None = None


def probe(proto: str, src_path: str, dst_ip: str, port: int | None, timeout: float,
          query: str | None = None) -> ProbeResult:
    token = uuid.uuid4().hex[:16]
    if proto == "dns":
        assert query is not None and port is not None
        return _dns(src_path, dst_ip, port, timeout, token, query)
    fn = {"tcp": _tcp, "http": _http, "udp": _udp, "icmp": _icmp}[proto]
    return fn(src_path, dst_ip, port, timeout, token)


def _dns(src_path: str, ip: str, port: int, timeout: float, token: str, name: str) -> ProbeResult:
    """One A query over UDP, as a resolver sends it; body = the first A record, or ''.
    detail: "A <ip>", "NXDOMAIN", "no A record" or how it failed."""
    from dnslib import QTYPE, RCODE, DNSRecord

    q = DNSRecord.question(name, "A")
    try:
        with netns.socket_in(src_path, _family(ip), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((ip, port))
            local = s.getsockname()[:2]
            s.send(q.pack())
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                data, peer = s.recvfrom(65535)
                try:
                    reply = DNSRecord.parse(data)
                except Exception:  # noqa: BLE001 - not a DNS reply: keep waiting
                    continue
                if reply.header.id != q.header.id:
                    continue
                break
    except OSError as e:
        return _error(e, token)
    if reply.header.rcode == RCODE.NXDOMAIN:
        return ProbeResult(True, f"NXDOMAIN from {peer[0]}:{peer[1]}", token, local, "")
    answers = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
    if not answers:
        return ProbeResult(True, f"no A record ({RCODE.get(reply.header.rcode)}) from {peer[0]}:{peer[1]}",
                           token, local, "")
    return ProbeResult(True, f"A {answers[0]} from {peer[0]}:{peer[1]}", token, local, answers[0])


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _error(e: OSError, token: str) -> ProbeResult:
    names = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "network unreachable",
             errno.EHOSTUNREACH: "host unreachable", errno.ECONNRESET: "reset",
             errno.ETIMEDOUT: "timeout", errno.EPERM: "not permitted"}
    if isinstance(e, (socket.timeout, TimeoutError)):
        return ProbeResult(False, "timeout", token)
    return ProbeResult(False, names.get(e.errno or 0, e.strerror or str(e)), token)


def _connect(src_path: str, ip: str, port: int, timeout: float) -> socket.socket:
    s = netns.socket_in(src_path, _family(ip), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
    except BaseException:
        s.close()
        raise
    return s


def _tcp(src_path: str, ip: str, port: int | None, timeout: float, token: str) -> ProbeResult:
    assert port is not None
    try:
        with _connect(src_path, ip, port, timeout) as s:
            local = s.getsockname()[:2]
            msg = ECHO_PREFIX + token.encode() + b"\n"
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(len(msg) - len(got))
                if not chunk:
                    break
                got += chunk
    except OSError as e:
        return _error(e, token)
    if got != msg:
        return ProbeResult(False, "connected, but no echo", token, local)
    return ProbeResult(True, "connected, echoed", token, local)


def _http(src_path: str, ip: str, port: int | None, timeout: float, token: str) -> ProbeResult:
    assert port is not None
    host = f"[{ip}]" if ":" in ip else ip
    req = (f"GET /host HTTP/1.0\r\nHost: {host}:{port}\r\n{TOKEN_HEADER}: {token}\r\n"
           f"User-Agent: nsbox\r\n\r\n").encode()
    try:
        with _connect(src_path, ip, port, timeout) as s:
            local = s.getsockname()[:2]
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return _error(e, token)
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0]
    code = status.split()[1] if len(status.split()) > 1 else "?"
    return ProbeResult(code == "200", f"HTTP {code}", token, local, body.strip())


def _udp(src_path: str, ip: str, port: int | None, timeout: float, token: str) -> ProbeResult:
    assert port is not None
    msg = ECHO_PREFIX + token.encode()
    try:
        with netns.socket_in(src_path, _family(ip), socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((ip, port))  # connected UDP: ICMP errors surface as exceptions
            local = s.getsockname()[:2]
            s.send(msg)
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                if s.recv(65535) == msg:
                    return ProbeResult(True, "echoed", token, local)
    except OSError as e:
        return _error(e, token)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(src_path: str, ip: str, port: int | None, timeout: float, token: str) -> ProbeResult:
    v6 = ":" in ip
    ident = os.getpid() & 0xFFFF ^ int(token[:4], 16)
    payload = token.encode()
    req_type, reply_type = (128, 129) if v6 else (8, 0)
    header = struct.pack("!BBHHH", req_type, 0, 0, ident, 1)
    packet = header + payload
    if not v6:  # the kernel computes the ICMPv6 checksum itself
        packet = struct.pack("!BBHHH", req_type, 0, _checksum(packet), ident, 1) + payload
    try:
        with netns.socket_in(src_path, _family(ip), socket.SOCK_RAW,
                     socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP) as s:
            s.sendto(packet, (ip, 0))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ProbeResult(False, "timeout", token)
                s.settimeout(left)
                data, addr = s.recvfrom(65535)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                typ, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if typ == reply_type and rid == ident and addr[0] == ip:
                    return ProbeResult(True, "echo reply", token)
                if typ in ((1,) if v6 else (3,)) and payload in icmp:  # destination unreachable
                    return ProbeResult(False, "icmp unreachable", token)
    except OSError as e:
        return _error(e, token)
