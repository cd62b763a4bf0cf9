"""Probes: real packets from inside a node, in this process.

The socket is opened while the thread is inside the source namespace and used
after leaving it (a socket stays bound to the netns it was created in). Each
probe carries a unique token so the server can report which source address it
saw for exactly this connection.

A probe is a generator task for nsbox/verify/loop.py (non-blocking sockets, one
`Wait` per kernel round trip): the verifier runs many at once in one thread and
can stop one the moment a rule's counter shows its packet was dropped.
`probe()` runs one to its end.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ctypes
import struct
import time
from dataclasses import dataclass
from typing import Generator

from nsbox.host import netns
from nsbox.verify.loop import READ, WRITE, Wait, run_one
from nsbox.verify.servers import ECHO_PREFIX, TOKEN_HEADER

Probe = Generator[Wait, None, "ProbeResult"]


@dataclass
class ProbeResult:
    reachable: bool
    detail: str  # "connected", "HTTP 200", "timeout", "refused", ...
    token: str
    local: tuple[str, int] | None = None  # the source address/port the probe used
    body: str | None = None
    # a denied probe: how it showed (nsbox.model.checks.DENY_KINDS), None when it was none
    # of those (reset mid-connection, an HTTP error, no echo)
    kind: str | None = None
    icmp_id: int | None = None  # icmp probes: the echo request's identifier (conntrack's id=)


def probe(proto: str, src_path: str, dst_ip: str, port: int | None, timeout: float,
          query: str | None = None) -> ProbeResult:
    """One probe, run to its end."""
    return run_one(probe_task(proto, src_path, dst_ip, port, timeout, query))


def probe_task(proto: str, src_path: str, dst_ip: str, port: int | None, timeout: float,
               query: str | None = None, sockets: "Sockets | None" = None, size: int | None = None,
               df: bool = False) -> Probe:
    """The probe as a task for nsbox.verify.loop (many at once, cancellable). SOCKETS: where
    its socket is made (many probes: one Sockets keeps the namespaces open between them).
    SIZE, DF: an icmp echo of SIZE bytes of IP packet, with don't-fragment."""
    token = os.urandom(8).hex()
    src = (sockets, src_path)
    if proto == "dns":
        assert query is not None and port is not None
        return _dns(src, dst_ip, port, timeout, token, query)
    if proto == "icmp":
        return _icmp(src, dst_ip, port, timeout, token, size, df)
    fn = {"tcp": _tcp, "http": _http, "udp": _udp, "icmp": _icmp}[proto]
    return fn(src, dst_ip, port, timeout, token)


class Sockets:
    """Makes sockets in namespaces, keeping each namespace's fd (and this thread's own)
    open until close(): a probe then costs two setns() calls, not four file operations more."""

    def __init__(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def make(self, path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if netns._libc.setns(fd, netns.CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {path}")
        try:
            return socket.socket(family, kind, proto)
        finally:
            if netns._libc.setns(self._home, netns.CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")  # never expected: the thread is lost

    def close(self) -> None:
        for fd in [*self._fds.values(), self._home]:
            os.close(fd)
        self._fds.clear()


# -- non-blocking socket steps (each yields until the kernel is ready) --
def _sock(src: tuple, family: int, kind: int, proto: int = 0) -> socket.socket:
    sockets, path = src
    s = sockets.make(path, family, kind, proto) if sockets else netns.socket_in(path, family, kind, proto)
    s.setblocking(False)
    return s


def _connect(s: socket.socket, addr: tuple, timeout: float) -> Generator[Wait, None, None]:
    err = s.connect_ex(addr)
    # Over veth the handshake usually completes inside connect() (softirq on this CPU):
    # one zero-timeout select instead of a trip through the loop's epoll.
    if err in (errno.EINPROGRESS, errno.EAGAIN) and not select.select((), (s,), (), 0)[1]:
        yield Wait(s, WRITE, time.monotonic() + timeout)
    if err in (errno.EINPROGRESS, errno.EAGAIN):
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def _send(s: socket.socket, data: bytes, timeout: float) -> Generator[Wait, None, None]:
    until = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view):]
        except BlockingIOError:
            yield Wait(s, WRITE, until)


def _recv(s: socket.socket, n: int, until: float) -> Generator[Wait, None, bytes]:
    while True:
        try:
            return s.recv(n)
        except BlockingIOError:
            yield Wait(s, READ, until)


def _recvfrom(s: socket.socket, until: float) -> Generator[Wait, None, tuple[bytes, tuple]]:
    while True:
        try:
            return s.recvfrom(65535)
        except BlockingIOError:
            yield Wait(s, READ, until)


def _dns(src: tuple, ip: str, port: int, timeout: float, token: str, name: str) -> Probe:
    """One A query over UDP, as a resolver sends it; body = the first A record, or ''.
    detail: "A <ip>", "NXDOMAIN", "no A record" or how it failed."""
    from dnslib import QTYPE, RCODE, DNSRecord

    q = DNSRecord.question(name, "A")
    try:
        with _sock(src, _family(ip), socket.SOCK_DGRAM) as s:
            s.connect((ip, port))
            local = s.getsockname()[:2]
            s.send(q.pack())
            deadline = time.monotonic() + timeout
            while True:
                data, peer = yield from _recvfrom(s, deadline)
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


# The kind of a denial by errno. EHOSTUNREACH/ENETUNREACH are also what an ICMP "administratively
# prohibited" becomes: the ICMP type and code read from the socket's error queue tell them apart.
_KINDS = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "unreachable", errno.EHOSTUNREACH: "unreachable",
          errno.ETIMEDOUT: "timeout", errno.EPERM: "filtered", errno.EACCES: "filtered"}
IP_RECVERR, IPV6_RECVERR = 11, 25  # <linux/in.h>, <linux/in6.h> (not in Python 3.11's socket module)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err


def icmp_kind(v6: bool, typ: int, code: int) -> str | None:
    """The kind of denial an ICMP(v6) error says: destination unreachable codes as RFC 792 /
    1812 and RFC 4443 number them."""
    if not v6 and typ == 3:
        return {2: "refused", 3: "refused", 9: "filtered", 10: "filtered", 13: "filtered"}.get(code, "unreachable")
    if v6 and typ == 1:
        return {1: "filtered", 4: "refused", 5: "filtered", 6: "filtered"}.get(code, "unreachable")
    return None


def _recverr(s: socket.socket) -> None:
    """Ask the kernel to queue the ICMP error that ends a connection, with its type and code."""
    v6 = s.family == socket.AF_INET6
    s.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, IPV6_RECVERR if v6 else IP_RECVERR, 1)


def _queued_icmp(s: socket.socket) -> tuple[bool, int, int, str] | None:
    """The ICMP error queued on S (IP_RECVERR): (v6, type, code, sender), or None."""
    try:
        _, anc, _, _ = s.recvmsg(1, 512, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for level, typ, data in anc:
        if (level, typ) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)) \
                and len(data) >= _EXTENDED_ERR.size:
            _, origin, itype, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
            if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                sender = _offender(data[_EXTENDED_ERR.size:])
                return origin == SO_EE_ORIGIN_ICMP6, itype, code, sender
    return None


def _offender(raw: bytes) -> str:
    """SO_EE_OFFENDER: the sockaddr after the extended error (who sent the ICMP)."""
    try:
        fam = struct.unpack_from("=H", raw)[0]
        if fam == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, raw[4:8])
        if fam == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    except (struct.error, ValueError, OSError):
        pass
    return "?"


def _error(e: OSError, token: str, s: socket.socket | None = None) -> ProbeResult:
    names = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "network unreachable",
             errno.EHOSTUNREACH: "host unreachable", errno.ECONNRESET: "reset",
             errno.ETIMEDOUT: "timeout", errno.EPERM: "not permitted",
             errno.EMSGSIZE: "message too long (over the route's MTU, don't fragment)"}
    if isinstance(e, (socket.timeout, TimeoutError)):
        return ProbeResult(False, "timeout", token, kind="timeout")
    detail = names.get(e.errno or 0, e.strerror or str(e))
    kind = _KINDS.get(e.errno or 0)
    icmp = _queued_icmp(s) if s is not None else None
    if icmp is not None:
        v6, typ, code, sender = icmp
        kind = icmp_kind(v6, typ, code) or kind
        detail += f" (ICMP{'v6' if v6 else ''} type {typ} code {code} from {sender})"
    return ProbeResult(False, detail, token, kind=kind)


def _tcp(src: tuple, ip: str, port: int | None, timeout: float, token: str) -> Probe:
    assert port is not None
    s = None
    try:
        with _sock(src, _family(ip), socket.SOCK_STREAM) as s:
            _recverr(s)
            try:
                yield from _connect(s, (ip, port), timeout)
            except OSError as e:
                return _error(e, token, s)
            local = s.getsockname()[:2]
            msg = ECHO_PREFIX + token.encode() + b"\n"
            yield from _send(s, msg, timeout)
            got = b""
            until = time.monotonic() + timeout
            while len(got) < len(msg):
                chunk = yield from _recv(s, len(msg) - len(got), until)
                if not chunk:
                    break
                got += chunk
    except OSError as e:
        return _error(e, token)
    if got != msg:
        return ProbeResult(False, "connected, but no echo", token, local)
    return ProbeResult(True, "connected, echoed", token, local)


def _http(src: tuple, ip: str, port: int | None, timeout: float, token: str) -> Probe:
    assert port is not None
    host = f"[{ip}]" if ":" in ip else ip
    req = (f"GET /host HTTP/1.0\r\nHost: {host}:{port}\r\n{TOKEN_HEADER}: {token}\r\n"
           f"User-Agent: nsbox\r\n\r\n").encode()
    try:
        with _sock(src, _family(ip), socket.SOCK_STREAM) as s:
            _recverr(s)
            try:
                yield from _connect(s, (ip, port), timeout)
            except OSError as e:
                return _error(e, token, s)
            local = s.getsockname()[:2]
            yield from _send(s, req, timeout)
            data = b""
            while True:
                chunk = yield from _recv(s, 4096, time.monotonic() + timeout)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return _error(e, token)
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0]
    code = status.split()[1] if len(status.split()) > 1 else "?"
    return ProbeResult(code == "200", f"HTTP {code}", token, local, body.strip())


def _udp(src: tuple, ip: str, port: int | None, timeout: float, token: str) -> Probe:
    assert port is not None
    msg = ECHO_PREFIX + token.encode()
    try:
        with _sock(src, _family(ip), socket.SOCK_DGRAM) as s:
            s.connect((ip, port))  # connected UDP: ICMP errors surface as exceptions
            _recverr(s)  # ... and queue their type and code
            local = s.getsockname()[:2]
            try:
                s.send(msg)
                deadline = time.monotonic() + timeout
                while True:
                    if (yield from _recv(s, 65535, deadline)) == msg:
                        return ProbeResult(True, "echoed", token, local)
            except (TimeoutError, socket.timeout) as e:
                return _error(e, token)
            except OSError as e:
                return _error(e, token, s)
    except OSError as e:
        return _error(e, token)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DONT = 10, 2, 0  # <linux/in.h>
IPV6_MTU_DISCOVER, IPV6_DONTFRAG = 23, 62  # <linux/in6.h>


def _icmp(src: tuple, ip: str, port: int | None, timeout: float, token: str, size: int | None = None,
          df: bool = False) -> Probe:
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
        with _sock(src, _family(ip), socket.SOCK_RAW,
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
                data, addr = yield from _recvfrom(s, deadline)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                typ, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if typ == reply_type and rid == ident and addr[0] == ip:
                    return ProbeResult(True, "echo reply", token, icmp_id=ident)
                if typ in ((1,) if v6 else (3,)) and payload in icmp:  # destination unreachable
                    code = icmp[1]
                    return ProbeResult(False, f"icmp unreachable (type {typ} code {code} from {addr[0]})", token,
                                       kind=icmp_kind(v6, typ, code), icmp_id=ident)
    except OSError as e:
        r = _error(e, token)
        r.icmp_id = ident
        return r
