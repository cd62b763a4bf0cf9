"""The lab's servers: HTTP, TCP echo, UDP echo and DNS, in one process of their own.

Each listening socket is opened while this thread is inside the node's netns,
so it serves there. start() forks the server process, which takes the sockets
with it and serves them all from one event loop; `ss -ltnp` in a node shows it
as `nsbox-servers`, as a learner expects a server to be a process. It never
competes with the probes for this interpreter's lock, and it dies with nsbox
(SIGKILL on close(), PR_SET_PDEATHSIG if nsbox itself is killed).

Like the book's web server, HTTP answers `GET /` with `Hello`, `GET /host` with
`NODE: <node>, POD IP:<ip>` and `GET /source` with the client address it saw.
Every connection's peer is recorded, keyed by the probe token the verifier
sends, and sent back to nsbox over a pipe before the reply leaves, so by the
time a probe has its answer the record is there for a check to read: proof of
what source address NAT produced.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import selectors
import signal
import socket
from dataclasses import dataclass, field

from nsbox.kernel import netns

TOKEN_HEADER = "X-Nsbox-Probe"
ECHO_PREFIX = b"nsbox-probe "
_MAX_REQUEST = 16384
PROCESS_NAME = b"nsbox-servers"  # what ps and `ss -p` show
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1
_F_SETPIPE_SZ = 1031
_UNSAFE = str.maketrans("\t\r\n", "???")


@dataclass
class _Conn:
    sock: socket.socket
    node: str
    ip: str
    kind: str
    peer: tuple[str, int]
    buf: bytes = b""


@dataclass
class ServerSet:
    """All servers of one lab, stopped by close()."""

    seen: dict[str, tuple[str, int]] = field(default_factory=dict)  # token -> peer (ip, port)
    served_by: dict[str, str] = field(default_factory=dict)  # token -> the container that answered
    _listeners: list = field(default_factory=list)  # (socket, ("listen", node, ip, kind)) until start()
    _zones: dict[int, dict[str, str]] = field(default_factory=dict)  # dns socket fd -> name -> A
    _procs: list = field(default_factory=list)  # proxy processes (subprocess.Popen)
    pid: int | None = None  # the server process
    _records: int = -1  # read end of the record pipe
    _partial: bytes = b""

    def listen(self, node: str, path: str, ip: str, kind: str, port: int, bind: str | None = None,
               records: tuple[tuple[str, str], ...] = ()) -> None:
        """Serve KIND on PORT in the netns at PATH; NODE is the name the server answers
        with (the container's: several containers may share one netns). BIND: the
        address to bind (default the wildcard); RECORDS: a dns server's A records."""
        dgram = kind in ("udp", "dns")
        s = _listener(path, bind, socket.SOCK_DGRAM if dgram else socket.SOCK_STREAM)
        try:
            if not dgram:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # By default bound to the wildcard: the node answers on all its addresses, as a
            # container's server does, in both families when it has IPv6 (see _listener).
            s.bind((bind or ("::" if s.family == socket.AF_INET6 else "0.0.0.0"), port))
            if not dgram:
                s.listen(128)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._listeners.append((s, ("listen", node, ip, kind)))
        if kind == "dns":
            self._zones[s.fileno()] = dict(records)

    def start(self) -> None:
        """Fork the server process; it takes the listening sockets (this process closes its copies)."""
        if self._zones:
            import dnslib  # noqa: F401 - imported before the fork: the child imports nothing
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)  # room for ~20,000 records between two reads
        except OSError:
            pass
        parent = os.getpid()
        libc = ctypes.CDLL(None, use_errno=True)  # before the fork: dlopen takes a lock another thread may hold
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the server process
            status = 1
            try:
                os.close(r)
                _become_server(parent, libc)
                _Server(self._listeners, self._zones, w).loop()
                status = 0
            finally:
                os._exit(status)
        self.pid = pid
        os.close(w)
        os.set_blocking(r, False)
        self._records = r
        for s, _ in self._listeners:
            s.close()
        self._listeners.clear()

    def records_fd(self) -> int:
        """The fd that becomes readable when the server process has recorded a peer."""
        return self._records

    def drain(self) -> None:
        """Read what the server process recorded so far."""
        while self._records >= 0:
            try:
                chunk = os.read(self._records, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                token, ip, port, node = line.decode("utf-8", "replace").rsplit("\t", 3)
                self.seen[token] = (ip, int(port))
                self.served_by[token] = node

    def start_proxy(self, node: str, path: str, p) -> None:
        """Start a userland proxy process (nsbox/verify/proxy.py) in the netns at PATH and
        wait until it listens; close() ends it."""
        import subprocess
        import sys

        from nsbox.errors import KernelError

        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        argv = [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {here!r}); "
                "from nsbox.verify.proxy import main; main()",
                "-netns", path, "-proto", p.proto, "-host-ip", p.host_ip, "-host-port", str(p.host_port),
                "-container-ip", p.container_ip, "-container-port", str(p.container_port),
                "-parent", str(os.getpid()), "-name", p.name]
        if getattr(p, "dns_local", None) is not None:  # dockerd's embedded DNS (proxy.py)
            argv += ["-dns-local", str(p.dns_local)] + (["-dns-servfail"] if p.dns_servfail else [])
        if getattr(p, "udp_reply_from_route", False):
            argv.append("-udp-reply-from-route")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self._procs.append(proc)
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if line != "ready":
            raise KernelError(f"{node}: {p.name} {p.proto} {p.host_ip}:{p.host_port} did not start: "
                              f"{line or 'exited ' + str(proc.wait())}")

    def peer_for(self, token: str) -> tuple[str, int] | None:
        if token not in self.seen:
            self.drain()
        return self.seen.get(token)

    def server_for(self, token: str) -> str | None:
        """The container whose server took the connection carrying TOKEN."""
        if token not in self.served_by:
            self.drain()
        return self.served_by.get(token)

    def close(self) -> None:
        for proc in self._procs:  # ours, by pid
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - it ignores SIGTERM: it cannot ignore this
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._procs.clear()
        if self.pid is not None:  # ours, by pid; it holds nothing that needs an orderly end
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = None
        for s, _ in self._listeners:
            s.close()
        self._listeners.clear()
        if self._records >= 0:
            os.close(self._records)
            self._records = -1


def _become_server(parent: int, libc: ctypes.CDLL) -> None:
    """First steps of the forked server process: named, tied to nsbox's life, and deaf to
    the signals that make nsbox tear down (nsbox's handlers must not run here)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # nsbox died before the line above took effect
        os._exit(1)
    libc.prctl(_PR_SET_NAME, PROCESS_NAME, 0, 0, 0)


class _Server:
    """The server process's event loop; records go to the pipe WFD before each reply."""

    def __init__(self, listeners: list, zones: dict[int, dict[str, str]], wfd: int) -> None:
        self._sel = selectors.DefaultSelector()
        for s, data in listeners:
            self._sel.register(s, selectors.EVENT_READ, data)
        self._zones = zones
        self._wfd = wfd

    def loop(self) -> None:
        while True:
            for key, _ in self._sel.select():
                data = key.data
                if data[0] == "listen":
                    try:
                        self._on_listener(key.fileobj, *data[1:])
                    except OSError:
                        pass  # e.g. a client gone before accept(); the probe reports what it saw
                    continue
                try:
                    self._on_conn(key.fileobj, data[1])
                except OSError:
                    self._drop(key.fileobj)  # reset or timed out: this connection is done

    def _write_record(self, token: str, peer: tuple[str, int], node: str) -> None:
        token = token.translate(_UNSAFE)  # a client's bytes: must not break the line format
        line = f"{token}\t{peer[0]}\t{peer[1]}\t{node}\n".encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self._wfd, view):]

    def _on_listener(self, s: socket.socket, node: str, ip: str, kind: str) -> None:
        if kind == "dns":
            payload, peer = s.recvfrom(65535)
            reply = dns_answer(payload, self._zones.get(s.fileno(), {}))
            if reply is not None:
                ip = unmapped(peer[0])
                self._write_record(f"dns:{ip}:{peer[1]}", (ip, peer[1]), node)
                s.sendto(reply, peer)
            return
        if kind == "udp":
            payload, peer = s.recvfrom(65535)
            self._record(payload, peer, node)
            s.sendto(payload, peer)
            return
        conn, peer = s.accept()
        conn.setblocking(False)
        self._sel.register(conn, selectors.EVENT_READ,
                           ("conn", _Conn(conn, node, ip, kind, (unmapped(peer[0]), peer[1]))))

    def _on_conn(self, s: socket.socket, c: _Conn) -> None:
        chunk = s.recv(4096)
        if not chunk:
            self._drop(s)
            return
        if c.kind == "tcp":
            if not c.buf:
                self._record(chunk, c.peer, c.node)
            c.buf = b"-"  # only the first chunk carries the token
            s.sendall(chunk)
            return
        c.buf += chunk
        if c.kind == "http" and c.buf.startswith(ECHO_PREFIX[: len(c.buf)]):
            if len(c.buf) < len(ECHO_PREFIX):
                return
            # A plain TCP probe of an HTTP port: answer it as an echo server would.
            self._record(c.buf, c.peer, c.node)
            c.kind = "tcp"
            s.sendall(c.buf)
            return
        if b"\r\n\r\n" not in c.buf and len(c.buf) < _MAX_REQUEST:
            return
        s.setblocking(True)
        s.settimeout(1.0)
        s.sendall(self._http_reply(c))
        self._drop(s)

    def _http_reply(self, c: _Conn) -> bytes:
        head = c.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split()
        path = parts[1] if len(parts) > 1 else "/"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == TOKEN_HEADER.lower():
                self._write_record(value.strip(), c.peer, c.node)
        if path == "/":
            status, body = "200 OK", "Hello\n"
        elif path == "/host":
            status, body = "200 OK", f"NODE: {c.node}, POD IP:{c.ip}\n"
        elif path == "/source":
            status, body = "200 OK", f"{c.peer[0]}:{c.peer[1]}\n"
        else:
            status, body = "404 Not Found", "not found\n"
        return (f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n{body}").encode()

    def _record(self, payload: bytes, peer: tuple, name: str) -> None:
        if payload.startswith(ECHO_PREFIX):
            token = payload[len(ECHO_PREFIX):].split(b"\n", 1)[0].decode("ascii", "replace").strip()
            self._write_record(token, (unmapped(peer[0]), peer[1]), name)

    def _drop(self, s: socket.socket) -> None:
        self._sel.unregister(s)
        s.close()


def _listener(path: str, bind: str | None, kind: int) -> socket.socket:
    """The socket a server listens on, made in the netns at PATH.

    Bound to an address: a socket of that address's family. Bound to the wildcard:
    one dual-stack `::` socket (IPV6_V6ONLY=0, whatever net.ipv6.bindv6only says), so
    the server answers IPv4 and IPv6 on one port, as a container's server bound to
    `::` does; IPv4 peers then show as ::ffff:a.b.c.d (see unmapped). Where the
    kernel has no IPv6 (ipv6.disable=1: EAFNOSUPPORT), the IPv4 wildcard."""
    if bind is not None:
        return netns.socket_in(path, socket.AF_INET6 if ":" in bind else socket.AF_INET, kind)
    try:
        s = netns.socket_in(path, socket.AF_INET6, kind)
    except OSError:
        return netns.socket_in(path, socket.AF_INET, kind)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    except OSError:
        s.close()
        raise
    return s


def unmapped(ip: str) -> str:
    """An IPv4-mapped IPv6 peer (::ffff:10.0.0.2, how a dual-stack socket sees an IPv4
    client) as the IPv4 address it is, so seen_from and conntrack (which tracks the
    IPv4 connection) name it alike; any other address unchanged."""
    if ip.startswith("::ffff:") and "." in ip:
        return ip[len("::ffff:"):]
    return ip


def dns_answer(query: bytes, zone: dict[str, str]) -> bytes | None:
    """The reply to a DNS query: A records from ZONE, NXDOMAIN for names it lacks (as
    Docker's embedded DNS does for names outside the container's networks, once it has
    no upstream). None for what is not a DNS query."""
    from dnslib import QTYPE, RCODE, RR, A, DNSRecord
    from dnslib.dns import DNSError

    try:
        request = DNSRecord.parse(query)
    except (DNSError, Exception):  # noqa: BLE001 - anything unparsable is not ours to answer
        return None
    reply = request.reply()
    q = request.q
    name = str(q.qname).rstrip(".").lower()
    if name in zone:
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(zone[name]), ttl=600))
    else:
        reply.header.rcode = RCODE.NXDOMAIN
    return reply.pack()
