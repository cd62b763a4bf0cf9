"""The holder: the one process that owns a live lab (`nsbox up`).

Sandboxed, it is the sandbox's pid 1 (a user, mount, net and pid namespace of
its own, nsbox/live/spawn.py): when it dies, however it dies, the kernel
destroys the sandbox and with it every namespace, link and rule of the lab.
--on-host, it is a root process in the host's namespaces whose lab is recorded
in a journal, as `nsbox run --on-host` does (`nsbox clean` removes it if the
holder is killed).

It builds the lab the way `nsbox run` does (one nsbox.session.LabSession: build,
serve, verify, teardown), starts one process per node (nsbox/live/node.py: the
node's hostname and /etc files) and then answers requests on its control
socket, one JSON line each way: status, verify, down.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

from nsbox.errors import KernelError, NsboxError, UsageError
from nsbox.model import Lab

MAX_REQUEST = 64 * 1024
NODE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node.py")


class Skipped(NsboxError):
    """The recipe needs what this kernel lacks: `run` would SKIP it (exit 4)."""

    exit_code = 4


@dataclass
class Options:
    recipe: str
    name: str
    on_host: bool
    sets: dict[str, str]
    recipe_dirs: tuple[str, ...]
    ctl_fd: int
    ready_fd: int
    # labs across machines (nsbox/live/parts.py): the machines this host builds, and the
    # underlay children `up` made for their wires: (node, ifname) -> child's name
    part: tuple[str, ...] = ()
    underlay_links: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Nodes:
    """The node processes: node name -> Popen."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.stdin:
                p.stdin.close()  # node.py ends when its stdin closes
        for p in self.procs.values():
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def node_files(lab: Lab, node: str) -> dict[str, str]:
    """/etc/hosts and /etc/resolv.conf for NODE, as Docker writes a container's."""
    n = lab.nodes[node]
    hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
    names = [node] + sorted(c.name for c in lab.containers.values() if c.node == node and c.name != node)
    if n.primary_ip:
        hosts += f"{n.primary_ip}\t{' '.join(names)}\n"
    embedded = any(s.kind == "dns" and s.address == "127.0.0.11" for s in n.servers) or any(
        p.host_ip == "127.0.0.11" for p in n.proxies)
    if n.resolver is not None:  # written by a kit (k8s: as kubelet writes a pod's)
        resolv = n.resolver.text()
    elif embedded:  # Docker's embedded DNS on a user-defined network
        resolv = "# written by nsbox: the node's embedded DNS, as Docker's\nnameserver 127.0.0.11\noptions ndots:0\n"
    else:
        resolv = "# written by nsbox: no DNS server in this lab answers this node\n"
    return {"hosts": hosts, "resolv": resolv}


def start_nodes(lab: Lab, paths: dict[str, str], only: tuple[str, ...] | None = None) -> Nodes:
    """A process per node (or per node in ONLY) holding its netns, hostname and /etc files."""
    nodes = Nodes()
    try:
        for name in (lab.nodes if only is None else only):
            p = subprocess.Popen([sys.executable, "-I", NODE_SCRIPT, str(os.getpid()), paths[name], name],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
            nodes.procs[name] = p
            assert p.stdin and p.stdout
            p.stdin.write((json.dumps(node_files(lab, name)) + "\n").encode())
            p.stdin.flush()
            line = p.stdout.readline().decode(errors="replace").strip()
            if line != "ok":
                raise KernelError(f"{name}: the node's process did not start: {line or 'it ended'}")
    except BaseException:
        nodes.stop()
        raise
    return nodes


def _load(opts: Options) -> Lab:
    from nsbox import cli, sandbox

    if opts.on_host:
        if os.geteuid() != 0:
            raise UsageError("--on-host builds in the real host's namespaces and needs root")
        labs = cli.load_labs_jailed((opts.recipe,), opts.sets, opts.recipe_dirs)
    else:
        if not sandbox.inside():
            raise UsageError("the holder runs only inside its sandbox (use `nsbox up`)")
        sandbox.setup_inside()
        labs = cli.load_labs((opts.recipe,), opts.sets, opts.recipe_dirs)
    cli._refuse_what_the_kernel_would(labs)
    lab = labs[0]
    from nsbox.session import LabSession

    lacking = LabSession(lab, on_host=opts.on_host).lacking()
    if lacking:
        raise Skipped(f"{lab.name} cannot run here: {'; '.join(lacking.values())}")
    return lab


def _tell(fd: int, data: dict) -> None:
    os.write(fd, (json.dumps(data) + "\n").encode())
    os.close(fd)


def main(opts: Options) -> int:
    from nsbox.session import LabSession

    ctl = socket.socket(fileno=opts.ctl_fd)
    ctl.set_inheritable(False)
    os.set_inheritable(opts.ready_fd, False)
    try:
        lab = _load(opts)
        part = None
        if opts.part:
            from nsbox.live import parts

            lab, part = parts.split_validated(lab, opts.part)
        session = LabSession(lab, on_host=opts.on_host)  # the one path every front end takes
        if part is not None:
            built = session.build(lambda lab, prefix, journal:
                                  parts.realize_part(lab, opts.underlay_links, prefix, journal))
        else:
            built = session.build()
    except NsboxError as e:
        _tell(opts.ready_fd, {"ok": False, "error": str(e), "exit": e.exit_code})
        return e.exit_code
    live = Live(opts, session)
    live.part = part
    try:
        live.servers = session.serve()
        live.nodes = start_nodes(lab, built.paths)
        # From now on the lab is reached through its node processes, not through the
        # pins in /run/netns: on the host that directory is shared, and a pin someone
        # else removes must not cut the holder off from a lab its processes still hold.
        live.netns_names = built.netns_names()
        built.paths.update({n: f"/proc/{p.pid}/ns/net" for n, p in live.nodes.procs.items()})
        _tell(opts.ready_fd, {"ok": True, "pid": os.getpid(),
                              "nodes": {n: p.pid for n, p in live.nodes.procs.items()},
                              "netns": live.netns_names,
                              "containers": {c.name: c.node for c in lab.containers.values()},
                              "checks": len(lab.checks),
                              **({"part": part.summary()} if part else {})})
        opts.ready_fd = -1
        live.serve(ctl)
    except NsboxError as e:
        if opts.ready_fd >= 0:
            try:
                _tell(opts.ready_fd, {"ok": False, "error": str(e), "exit": e.exit_code})
            except OSError:
                pass
        return e.exit_code
    finally:
        problems = live.close()  # signals deferred in it
        if problems:
            print("nsbox: holder: teardown: " + "; ".join(problems), file=sys.stderr)
        if live.goodbye is not None:  # `down` waits for this: the lab is gone when it reads it
            try:
                live.goodbye.sendall((json.dumps({"ok": not problems, "problems": problems}) + "\n").encode())
                live.goodbye.close()
            except OSError:
                pass
    return 0


class Live:
    def __init__(self, opts: Options, session) -> None:
        self.opts, self.session = opts, session
        self.lab, self.built = session.lab, session.built
        self.servers = None
        self.nodes: Nodes | None = None
        self.goodbye: socket.socket | None = None
        self.netns_names: dict[str, str] = {}
        self.part = None  # nsbox/live/parts.Part when this host holds a part of the lab

    def close(self) -> list[str]:
        from nsbox.signals import deferred

        with deferred():  # nests: the session's teardown defers them too
            if self.nodes:
                self.nodes.stop()
            return self.session.teardown()  # the servers, then the lab

    def serve(self, ctl: socket.socket) -> None:
        while True:
            conn, _ = ctl.accept()
            try:
                if not _peer_is_owner(conn):
                    continue
                conn.settimeout(10)
                request = _read_line(conn)
                conn.settimeout(None)
                op = request.get("op")
                if op == "down":
                    self.goodbye, conn = conn, None
                    return
                reply = self.handle(op, request)
                conn.sendall((json.dumps(reply) + "\n").encode())
            except (OSError, ValueError):
                pass
            finally:
                if conn is not None:
                    conn.close()

    def handle(self, op: object, request: dict) -> dict:
        if op == "status":
            return {"ok": True, "nodes": self.interfaces()}
        if op == "verify":
            return self.verify(str(request.get("format", "text")), float(request.get("timeout", 1.0)))
        return {"ok": False, "error": f"unknown request {op!r}"}

    def interfaces(self) -> dict[str, list]:
        out = {}
        for node, path in self.built.paths.items():
            done = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "addr", "show"],
                                  capture_output=True, text=True, check=False)
            try:
                links = json.loads(done.stdout or "[]")
            except ValueError:
                links = []
            out[node] = [{"ifname": l.get("ifname"), "state": l.get("operstate"),
                          "addresses": [f"{a['local']}/{a['prefixlen']}" for a in l.get("addr_info", [])
                                        if a.get("scope") != "link"]}
                         for l in links]
        return out

    def verify(self, fmt: str, timeout: float) -> dict:
        """The recipe's checks against the lab as it is now; the servers kept running."""
        from nsbox.report.output import FORMATS, render
        from nsbox.verify.matrix import tables as matrix_tables
        from nsbox.verify.results import RecipeResult, exit_code
        from nsbox.verify.verifier import Timing

        if fmt not in FORMATS:
            return {"ok": False, "error": f"unknown format {fmt!r}"}
        start = time.monotonic()
        result = RecipeResult(self.lab.name, "pass", description=self.lab.description)
        result.namespaces = self.netns_names
        try:
            result.checks = self.session.verify(Timing(probe_timeout=timeout, deadline=max(4.0, 4 * timeout)))
            result.matrices = [matrix_tables(m, result.checks) for m in self.lab.matrices]
        except KernelError as e:
            result.error = str(e)
        result.verify_ms = round((time.monotonic() - start) * 1000, 1)
        if result.error or not all(c.passed for c in result.checks):
            result.status = "fail"
        result.duration_s = time.monotonic() - start
        return {"ok": True, "report": render([result], fmt), "exit": exit_code([result]),
                **({"note": self.part.summary()} if self.part else {}),
                "passed": sum(c.passed for c in result.checks), "checks": len(result.checks)}


def _peer_is_owner(conn: socket.socket) -> bool:
    """The socket is 0600 in a 0700 directory; this checks it again: only root as
    the holder sees it (the lab's owner, in the sandbox's user namespace) may ask."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.geteuid()


def _read_line(conn: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("not a request")
    return request
