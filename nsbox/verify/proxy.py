"""A userland proxy, as docker-proxy is: one process per published port, listening on the
host's HOST_IP:HOST_PORT inside the given netns and relaying each TCP connection (or UDP
flow) to CONTAINER_IP:CONTAINER_PORT. Started with docker-proxy's own flags:

    python -I -m nsbox.verify.proxy -netns PATH -proto tcp -host-ip 0.0.0.0 -host-port 8080 \
        -container-ip 172.17.0.2 -container-port 80

It enters the netns first, so every socket it opens is the lab's; it dies with its parent
(PR_SET_PDEATHSIG) and on SIGTERM. It prints "ready" on stdout once it listens.

With -dns-local it is dockerd's embedded DNS resolver instead (see serve_dns_udp).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import selectors
import signal
import socket
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux <netinet/in.h>; Python does not export it
_CLONE_NEWNET = 0x40000000
_UDP_IDLE = 30.0  # docker-proxy's UDP connection tracking timeout is 90 s; labs are short


def _enter(path: str, parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        sys.exit(1)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def serve_tcp(listener: socket.socket, upstream: tuple[str, int]) -> None:
    """Relay each accepted connection to UPSTREAM, both directions on their own, as
    docker-proxy does: EOF on one side is passed on as a half-close (shutdown(SHUT_WR) of
    the other socket) and the reverse direction keeps flowing until it ends too. A client
    that sends its request and half-closes (`printf ... | nc -N`) still gets its answer."""
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    peers: dict[socket.socket, socket.socket] = {}
    ended: set[socket.socket] = set()  # sockets whose reading side hit EOF

    def close(s: socket.socket) -> None:
        """An error on either side: the whole connection goes, as docker-proxy's io.Copy fails."""
        other = peers.pop(s, None)
        for x in (s, other):
            if x is not None:
                try:
                    sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                peers.pop(x, None)
                ended.discard(x)
                x.close()

    def eof(s: socket.socket) -> None:
        other = peers[s]
        sel.unregister(s)
        ended.add(s)
        try:
            other.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if other in ended:  # both directions done
            close(s)

    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is listener:
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                backend = socket.socket(_family(upstream[0]), socket.SOCK_STREAM)
                backend.settimeout(5)
                try:
                    backend.connect(upstream)
                except OSError:
                    backend.close()
                    client.close()  # as docker-proxy: the client sees the connection end
                    continue
                for x in (client, backend):
                    x.setblocking(False)
                peers[client], peers[backend] = backend, client
                sel.register(client, selectors.EVENT_READ, None)
                sel.register(backend, selectors.EVENT_READ, None)
                continue
            if s not in peers:
                continue  # closed earlier in this round
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                close(s)
                continue
            if not data:
                eof(s)
                continue
            try:
                peers[s].setblocking(True)
                peers[s].sendall(data)
                peers[s].setblocking(False)
            except (OSError, KeyError):
                close(s)


def _pktinfo_on(sock: socket.socket) -> None:
    """Have recvmsg() say which address each datagram was sent to."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)


def _dst_of(ancdata: list, family: int) -> bytes | None:
    """The destination address of a received datagram, from its PKTINFO."""
    for level, kind, data in ancdata:
        if family == socket.AF_INET6 and (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO):
            return data[:16]
        if family == socket.AF_INET and (level, kind) == (socket.IPPROTO_IP, _IP_PKTINFO):
            return data[8:12]  # struct in_pktinfo: ifindex, spec_dst, addr
    return None


def _reply_from(dst: bytes | None, family: int) -> list:
    """Ancillary data that makes sendmsg() use DST as the source address."""
    if dst is None:
        return []
    if family == socket.AF_INET6:
        return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, dst + b"\0\0\0\0")]
    return [(socket.IPPROTO_IP, _IP_PKTINFO, b"\0\0\0\0" + dst + b"\0\0\0\0")]


def serve_udp(listener: socket.socket, upstream: tuple[str, int], from_route: bool = False) -> None:
    """One upstream socket per client address. Replies leave from the address the client
    wrote to (IP_PKTINFO), as docker-proxy's UDP proxy does since Docker 28 (moby
    6c6174b3): a wildcard listener would otherwise answer from whatever address the route
    picks, and a client that connected its socket drops the reply. FROM_ROUTE: the older
    docker-proxy (Docker <= 27, 20.10's), which does just that."""
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    if not from_route:
        _pktinfo_on(listener)
    flows: dict[tuple, socket.socket] = {}
    origin: dict[tuple, bytes | None] = {}
    last: dict[tuple, float] = {}
    space = socket.CMSG_SPACE(20)
    while True:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if s is listener:
                data, anc, _, client = listener.recvmsg(65535, space)
                origin[client] = _dst_of(anc, listener.family)
                up = flows.get(client)
                if up is None:
                    up = socket.socket(_family(upstream[0]), socket.SOCK_DGRAM)
                    up.connect(upstream)
                    flows[client] = up
                    sel.register(up, selectors.EVENT_READ, client)
                last[client] = time.monotonic()
                try:
                    up.send(data)
                except OSError:
                    pass
            else:
                client = key.data
                try:
                    listener.sendmsg([s.recv(65535)], _reply_from(origin.get(client), listener.family), 0, client)
                except OSError:
                    pass
        now = time.monotonic()
        for client in [c for c, t in last.items() if now - t > _UDP_IDLE]:
            sel.unregister(flows[client])
            flows.pop(client).close()
            del last[client]
            origin.pop(client, None)


# --- dockerd's embedded DNS resolver (-dns-local) -------------------------------------
#
# The resolver dockerd runs in each container on a user network (moby resolver.go): the
# names of the container's networks are answered locally; every other name is forwarded
# to the host's upstream resolver, from the container's own netns (the query leaves by
# its default route and is NATed like any traffic of its), and the upstream's answer is
# passed back. Here the local part is the lab's DNS server on HOST_IP:DNS_LOCAL (UDP):
# what it answers NXDOMAIN goes to CONTAINER_IP:CONTAINER_PORT, the upstream. When the
# upstream does not answer within 4 s (moby's extIOTimeout) Docker 20.10 sends nothing
# (the client times out) and Docker 28+ answers SERVFAIL (-dns-servfail). TCP queries
# (length-prefixed, RFC 1035 4.2.2) are answered the same way; they are forwarded to the
# upstream over UDP (the lab's DNS servers speak UDP only; Docker would use TCP).

_EXT_TIMEOUT = 4.0
_RCODE_NXDOMAIN, _RCODE_SERVFAIL = 3, 2


def _ask(server: tuple[str, int], query: bytes, timeout: float) -> bytes | None:
    s = socket.socket(_family(server[0]), socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect(server)
        s.send(query)
        deadline = time.monotonic() + timeout
        while True:
            reply = s.recv(65535)
            if reply[:2] == query[:2]:  # the same query id
                return reply
            s.settimeout(max(0.01, deadline - time.monotonic()))
    except OSError:
        return None
    finally:
        s.close()


def _servfail(query: bytes) -> bytes | None:
    try:
        from dnslib import RCODE, DNSRecord

        reply = DNSRecord.parse(query).reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()
    except Exception:  # noqa: BLE001 - not a query we can answer
        return None


def dns_resolve(query: bytes, local: tuple[str, int], upstream: tuple[str, int] | None,
                servfail: bool) -> bytes | None:
    """The resolver's answer to QUERY, or None (no answer: the client times out)."""
    if len(query) < 12:
        return None
    reply = _ask(local, query, 1.0)
    if reply is None or len(reply) < 4 or (reply[3] & 0x0F) != _RCODE_NXDOMAIN or upstream is None:
        return reply
    ext = _ask(upstream, query, _EXT_TIMEOUT)
    if ext is None:
        return _servfail(query) if servfail else None
    return ext


def serve_dns_udp(listener: socket.socket, local: tuple[str, int], upstream: tuple[str, int] | None,
                  servfail: bool) -> None:
    """One thread per query: a forwarded one may wait for the upstream for seconds."""
    import threading

    def answer(query: bytes, client: tuple) -> None:
        reply = dns_resolve(query, local, upstream, servfail)
        if reply is not None:
            try:
                listener.sendto(reply, client)
            except OSError:
                pass

    while True:
        query, client = listener.recvfrom(65535)
        threading.Thread(target=answer, args=(query, client), daemon=True).start()


def serve_dns_tcp(listener: socket.socket, local: tuple[str, int], upstream: tuple[str, int] | None,
                  servfail: bool) -> None:
    import threading

    def read_exact(conn: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def session(conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            while True:  # several queries may share one connection
                head = read_exact(conn, 2)
                if head is None:
                    return
                query = read_exact(conn, int.from_bytes(head, "big"))
                if query is None:
                    return
                reply = dns_resolve(query, local, upstream, servfail)
                if reply is None:
                    return
                conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=session, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="nsbox-proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("-netns", required=True)
    p.add_argument("-proto", choices=("tcp", "udp"), default="tcp")
    p.add_argument("-host-ip", default="0.0.0.0")
    p.add_argument("-host-port", type=int, required=True)
    p.add_argument("-container-ip", required=True)
    p.add_argument("-container-port", type=int, required=True)
    p.add_argument("-parent", type=int, default=None, help="the pid that started it (it dies with it)")
    p.add_argument("-name", default="docker-proxy", help="the process name ps and ss -p show")
    p.add_argument("-dns-local", type=int, default=None,
                   help="be dockerd's embedded DNS: answer from the DNS server at HOST_IP:DNS_LOCAL, "
                        "forward what it does not know to CONTAINER_IP:CONTAINER_PORT (0.0.0.0: nowhere)")
    p.add_argument("-dns-servfail", action="store_true", help="answer SERVFAIL when the upstream is silent")
    p.add_argument("-udp-reply-from-route", action="store_true",
                   help="UDP replies from the address the route picks (docker-proxy before Docker 28)")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ctypes.CDLL(None).prctl(_PR_SET_NAME, a.name.encode()[:15], 0, 0, 0)
    _enter(a.netns, a.parent if a.parent is not None else os.getppid())
    kind = socket.SOCK_STREAM if a.proto == "tcp" else socket.SOCK_DGRAM
    listener = socket.socket(_family(a.host_ip), kind)
    if a.proto == "tcp":
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((a.host_ip, a.host_port))
        if a.proto == "tcp":
            listener.listen(128)
    except OSError as e:
        print(f"error: listen {a.proto} {a.host_ip}:{a.host_port}: {e.strerror}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    upstream = (a.container_ip, a.container_port)
    if a.dns_local is not None:
        local = (a.host_ip, a.dns_local)
        ext = None if a.container_ip in ("0.0.0.0", "::") else upstream
        (serve_dns_tcp if a.proto == "tcp" else serve_dns_udp)(listener, local, ext, a.dns_servfail)
    if a.proto == "tcp":
        serve_tcp(listener, upstream)
    serve_udp(listener, upstream, a.udp_reply_from_route)


if __name__ == "__main__":
    main()
