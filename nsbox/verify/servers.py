"""The lab's servers (HTTP, TCP echo, UDP echo, DNS, ...: each protocol's server is in
its module, nsbox/kinds/protocols/), in processes of their own.

Each listening socket is opened while this thread is inside the node's netns,
so it serves there. start() forks one server process per container (or node)
with servers, as a real node runs one process per container: it moves into that
netns (so `ip netns pids POD` lists it), takes that container's sockets and
serves them from one event loop; its name (comm, what `ss -ltnp` and `ps -o comm`
show) and its command line (what `ps` shows) are the container's. A pod sandbox
(Lab.sandbox) is held by a `pause infinity` process in its netns, as the pause
container holds a real pod's. Past MAX_PROCESSES the remaining servers share one
`nsbox-servers` process (a 1,000-pod lab stays light). None of them competes with
the probes for this interpreter's lock, and each dies with nsbox (SIGKILL on
close(), PR_SET_PDEATHSIG if nsbox itself is killed).

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

from nsbox.host import netns
from nsbox.kinds import protocols

TOKEN_HEADER = "X-Nsbox-Probe"
ECHO_PREFIX = b"nsbox-probe "
PROCESS_NAME = b"nsbox-servers"  # the shared process past MAX_PROCESSES: what ps and `ss -p` show
MAX_PROCESSES = 128  # server and holder processes of one lab, at most
PAUSE_ARGV = ["pause", "infinity"]  # a sandbox holder: /bin/sleep, named as kubelet's pause
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
    _starting: list = field(default_factory=list)  # (proxy, what) not yet known to listen
    _paths: list = field(default_factory=list)  # the netns path of each of _listeners
    _holders: list = field(default_factory=list)  # (name, netns path) of each sandbox to hold
    pids: list = field(default_factory=list)  # the server and holder processes
    _records: int = -1  # read end of the record pipe
    _partial: bytes = b""

    def listen(self, node: str, path: str, ip: str, kind: str, port: int, bind: str | None = None,
               records: tuple[tuple[str, str], ...] = ()) -> None:
        """Serve KIND on PORT in the netns at PATH; NODE is the name the server answers
        with (the container's: several containers may share one netns). BIND: the
        address to bind (default the wildcard); RECORDS: a dns server's A records."""
        serving = protocols.get(kind).serving
        if serving is None:
            raise ValueError(f"protocol {kind} has no server")
        s = _listener(path, bind, serving.sock_type, serving.ip_proto)
        try:
            if serving.stream:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # By default bound to the wildcard: the node answers on all its addresses, as a
            # container's server does, in both families when it has IPv6 (see _listener).
            s.bind((bind or ("::" if s.family == socket.AF_INET6 else "0.0.0.0"), port))
            if serving.stream:
                s.listen(128)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._listeners.append((s, ("listen", node, ip, kind)))
        self._paths.append(path)
        if records:
            from nsbox.model import dnszone

            self._zones[s.fileno()] = dnszone.build(records)

    @property
    def pid(self) -> int | None:
        """The first server process (there may be several: see pids)."""
        return self.pids[0] if self.pids else None

    def hold(self, name: str, path: str) -> None:
        """Keep a `pause` process in the netns at PATH (the sandbox NAME) from start() to close()."""
        self._holders.append((name, path))

    def start(self) -> None:
        """Fork the server processes, one per container with servers; each takes its
        listening sockets (this process closes its copies), then the sandboxes' holders."""
        import gc

        # imported before the fork: the child imports nothing (dns: dnslib)
        for module in protocols.imports_for({data[3] for _, data in self._listeners}):
            __import__(module)
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)  # room for ~20,000 records between two reads
        except OSError:
            pass
        parent = os.getpid()
        libc = ctypes.CDLL(None, use_errno=True)  # before the fork: dlopen takes a lock another thread may hold
        groups: dict[tuple[str, str], list[int]] = {}  # (container, netns path) -> its listeners
        for i, ((_, data), path) in enumerate(zip(self._listeners, self._paths)):
            groups.setdefault((data[1], path), []).append(i)
        keys = list(groups)
        holders = self._holders[:max(0, MAX_PROCESSES - len(keys))]
        if len(keys) > MAX_PROCESSES - len(holders):  # the rest share one process
            own = MAX_PROCESSES - len(holders) - 1
            shared = [i for k in keys[own:] for i in groups[k]]
            keys = keys[:own]
            groups = {k: groups[k] for k in keys}
            if shared:
                groups[(PROCESS_NAME.decode(), "")] = shared
        gc.freeze()  # the children touch no old objects' refcounts: fewer pages copied
        try:
            for (name, path), idx in groups.items():
                mine = set(idx)
                pid = os.fork()
                if pid == 0:  # pragma: no cover - a server process
                    status = 1
                    try:
                        os.close(r)
                        for i, (s, _) in enumerate(self._listeners):
                            if i not in mine:
                                s.close()  # another container's: `ss -p` must show its own process only
                        _become_server(parent, libc, name.encode(), path)
                        _Server([self._listeners[i] for i in idx], self._zones, w).loop()
                        status = 0
                    finally:
                        os._exit(status)
                self.pids.append(pid)
            for name, path in holders:
                self.pids.append(_spawn_holder(parent, libc, path))
        finally:
            gc.unfreeze()
            os.close(w)
            os.set_blocking(r, False)
            self._records = r
            for s, _ in self._listeners:
                s.close()
            self._listeners.clear()
            self._paths.clear()

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
        """Start a userland proxy process (nsbox/verify/proxy.py) in the netns at PATH;
        wait_proxies() waits until it listens, close() ends it."""
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
        self._starting.append((proc, f"{node}: {p.name} {p.proto} {p.host_ip}:{p.host_port}"))

    def wait_proxies(self) -> None:
        """Wait until every proxy start_proxy() started listens. They start side by side:
        each is an interpreter start-up (~0.1 s), and user-networks runs one per container."""
        from nsbox.errors import KernelError

        starting, self._starting = self._starting, []
        for proc, what in starting:
            line = proc.stdout.readline().strip() if proc.stdout else ""
            if line != "ready":
                raise KernelError(f"{what} did not start: {line or 'exited ' + str(proc.wait())}")

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
        for pid in self.pids:  # ours, by pid; they hold nothing that needs an orderly end
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids.clear()
        for s, _ in self._listeners:
            s.close()
        self._listeners.clear()
        self._paths.clear()
        if self._records >= 0:
            os.close(self._records)
            self._records = -1


def _become_server(parent: int, libc: ctypes.CDLL, name: bytes = PROCESS_NAME, path: str = "") -> None:
    """First steps of a forked server process: tied to nsbox's life, deaf to the signals
    that make nsbox tear down (nsbox's handlers must not run here), in the netns at PATH
    (its sockets are there already: this is what `ip netns pids` reads), named NAME."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # nsbox died before the line above took effect
        os._exit(1)
    if path:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, netns.CLONE_NEWNET) != 0:
                os._exit(1)
        finally:
            os.close(fd)
    libc.prctl(_PR_SET_NAME, name[:15], 0, 0, 0)
    _set_cmdline(name)


def _set_cmdline(name: bytes) -> None:
    """Make /proc/self/cmdline (what `ps` prints) NAME: overwrite the process's original
    argument strings in place (arg_start..arg_end of /proc/self/stat; Python keeps its own
    copy of argv, so nothing reads them any more), as setproctitle does. PR_SET_MM would
    need CAP_SYS_RESOURCE, which a container's root often lacks."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47 - 2]), int(fields[48 - 2])  # fields 48, 49; [0] is field 3
    except (OSError, ValueError, IndexError):
        return
    size = end - start
    if size <= 1:
        return
    text = name[:size - 1]
    ctypes.memset(start, 0, size)
    ctypes.memmove(start, text, len(text))


def _spawn_holder(parent: int, libc: ctypes.CDLL, path: str) -> int:
    """A sandbox's holder: /bin/sleep run as `pause infinity` in the netns at PATH, tied to
    nsbox's life (PR_SET_PDEATHSIG survives the exec)."""
    import shutil

    sleep = shutil.which("sleep") or "/bin/sleep"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the holder
        try:
            _become_server(parent, libc, b"pause", path)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 65536)
            os.execv(sleep, PAUSE_ARGV)
        finally:
            os._exit(1)
    return pid


class _Server:
    """The server process's event loop; records go to the pipe WFD before each reply."""

    def __init__(self, listeners: list, zones: dict[int, dict[str, str]], wfd: int) -> None:
        self._sel = selectors.DefaultSelector()
        for s, data in listeners:
            self._sel.register(s, selectors.EVENT_READ, data)
        self.zones = zones  # dns socket fd -> name -> address
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
                    self.drop(key.fileobj)  # reset or timed out: this connection is done

    def write_record(self, token: str, peer: tuple[str, int], node: str) -> None:
        token = token.translate(_UNSAFE)  # a client's bytes: must not break the line format
        line = f"{token}\t{peer[0]}\t{peer[1]}\t{node}\n".encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self._wfd, view):]

    def _on_listener(self, s: socket.socket, node: str, ip: str, kind: str) -> None:
        serving = protocols.get(kind).serving
        if serving.on_datagram is not None:
            serving.on_datagram(self, s, node)
            return
        conn, peer = s.accept()
        conn.setblocking(False)
        self._sel.register(conn, selectors.EVENT_READ,
                           ("conn", _Conn(conn, node, ip, kind, (unmapped(peer[0]), peer[1]))))

    def _on_conn(self, s: socket.socket, c: _Conn) -> None:
        chunk = s.recv(4096)
        if not chunk:
            self.drop(s)
            return
        protocols.get(c.kind).serving.on_data(self, s, c, chunk)

    def record(self, payload: bytes, peer: tuple, name: str) -> None:
        if payload.startswith(ECHO_PREFIX):
            token = payload[len(ECHO_PREFIX):].split(b"\n", 1)[0].decode("ascii", "replace").strip()
            self.write_record(token, (unmapped(peer[0]), peer[1]), name)

    def drop(self, s: socket.socket) -> None:
        self._sel.unregister(s)
        s.close()


def _listener(path: str, bind: str | None, kind: int, proto: int = 0) -> socket.socket:
    """The socket a server listens on, made in the netns at PATH.

    Bound to an address: a socket of that address's family. Bound to the wildcard:
    one dual-stack `::` socket (IPV6_V6ONLY=0, whatever net.ipv6.bindv6only says), so
    the server answers IPv4 and IPv6 on one port, as a container's server bound to
    `::` does; IPv4 peers then show as ::ffff:a.b.c.d (see unmapped). Where the
    kernel has no IPv6 (ipv6.disable=1: EAFNOSUPPORT), the IPv4 wildcard."""
    if bind is not None:
        return netns.socket_in(path, socket.AF_INET6 if ":" in bind else socket.AF_INET, kind, proto)
    try:
        s = netns.socket_in(path, socket.AF_INET6, kind, proto)
    except OSError:
        return netns.socket_in(path, socket.AF_INET, kind, proto)
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
