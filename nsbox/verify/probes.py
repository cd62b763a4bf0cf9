"""Probes: real packets from inside a node, in this process.

Each protocol's probe is in its module (nsbox/kinds/protocols/); here is what they
share: the non-blocking socket steps, the socket maker and how an error reads.

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
from nsbox.kinds import protocols
from nsbox.verify.loop import READ, WRITE, Wait, run_one

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
          query: str | None = None, size: int | None = None, df: bool = False) -> ProbeResult:
    """One probe, run to its end."""
    return run_one(probe_task(proto, src_path, dst_ip, port, timeout, query, size=size, df=df))


def probe_task(proto: str, src_path: str, dst_ip: str, port: int | None, timeout: float,
               query: str | None = None, sockets: "Sockets | None" = None, size: int | None = None,
               df: bool = False) -> Probe:
    """The probe as a task for nsbox.verify.loop (many at once, cancellable), sent by
    PROTO's module. SOCKETS: where its socket is made (many probes: one Sockets keeps the
    namespaces open between them). QUERY: a dns name; SIZE, DF: an icmp echo of SIZE
    bytes of IP packet, with don't-fragment."""
    token = os.urandom(8).hex()
    p = protocols.get(proto)
    return p.probe((sockets, src_path), dst_ip, port, timeout, token, protocols.ProbeOptions(query, size, df))


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
def sock(src: tuple, family: int, kind: int, proto: int = 0) -> socket.socket:
    sockets, path = src
    s = sockets.make(path, family, kind, proto) if sockets else netns.socket_in(path, family, kind, proto)
    s.setblocking(False)
    return s


def connect(s: socket.socket, addr: tuple, timeout: float) -> Generator[Wait, None, None]:
    err = s.connect_ex(addr)
    # Over veth the handshake usually completes inside connect() (softirq on this CPU):
    # one zero-timeout select instead of a trip through the loop's epoll.
    if err in (errno.EINPROGRESS, errno.EAGAIN) and not select.select((), (s,), (), 0)[1]:
        yield Wait(s, WRITE, time.monotonic() + timeout)
    if err in (errno.EINPROGRESS, errno.EAGAIN):
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def send(s: socket.socket, data: bytes, timeout: float) -> Generator[Wait, None, None]:
    until = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view):]
        except BlockingIOError:
            yield Wait(s, WRITE, until)


def recv(s: socket.socket, n: int, until: float) -> Generator[Wait, None, bytes]:
    while True:
        try:
            return s.recv(n)
        except BlockingIOError:
            yield Wait(s, READ, until)


def recvfrom(s: socket.socket, until: float) -> Generator[Wait, None, tuple[bytes, tuple]]:
    while True:
        try:
            return s.recvfrom(65535)
        except BlockingIOError:
            yield Wait(s, READ, until)


def family(ip: str) -> int:
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


def recverr(s: socket.socket) -> None:
    """Ask the kernel to queue the ICMP error that ends a connection, with its type and code."""
    v6 = s.family == socket.AF_INET6
    s.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, IPV6_RECVERR if v6 else IP_RECVERR, 1)


def queued_icmp(s: socket.socket) -> tuple[bool, int, int, str] | None:
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


def error(e: OSError, token: str, s: socket.socket | None = None) -> ProbeResult:
    names = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "network unreachable",
             errno.EHOSTUNREACH: "host unreachable", errno.ECONNRESET: "reset",
             errno.ETIMEDOUT: "timeout", errno.EPERM: "not permitted",
             errno.EMSGSIZE: "message too long (over the route's MTU, don't fragment)"}
    if isinstance(e, (socket.timeout, TimeoutError)):
        return ProbeResult(False, "timeout", token, kind="timeout")
    detail = names.get(e.errno or 0, e.strerror or str(e))
    kind = _KINDS.get(e.errno or 0)
    icmp = queued_icmp(s) if s is not None else None
    if icmp is not None:
        v6, typ, code, sender = icmp
        kind = icmp_kind(v6, typ, code) or kind
        detail += f" (ICMP{'v6' if v6 else ''} type {typ} code {code} from {sender})"
    return ProbeResult(False, detail, token, kind=kind)


