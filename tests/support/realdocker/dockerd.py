"""The real dockerd (Debian's docker.io 20.10) in a throwaway namespace, for differential tests.

    with RealDocker(userland_proxy=True) as d:
        c1 = d.run("c1")                       # docker run -d --name c1 bb sleep 3600
        d.netns("c1")                          # /proc/<host pid of c1's init>/ns/net
        d.iptables_save()                      # the Docker host's rules

dockerns.sh (beside this file) is pid 1 of a new pid namespace with its own net and
mount namespaces: tmpfs over /run and /etc/docker, dockerd with its own data and
exec roots and socket under a temporary folder, an "internet" and a "lan" netns
wired to the host by veth pairs (addresses as recipes/bridge_mode.py). The docker
client talks to that socket from here. Teardown is by pid only: `docker rm -f` the
containers, EOF to the script (it stops dockerd), wait for the unshare process
(--kill-child: if it has to be killed, the kernel kills the whole pid namespace),
then remove the cgroup folders runc made under --cgroup-parent (cgroup v1: the only
host-global state) and the temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "dockerns.sh"
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # not PATH's: another client may come first (/usr/local/bin/docker here)
BUSYBOX = "/bin/busybox"
CGROUP_ROOT = Path("/sys/fs/cgroup")
IMAGE = "bb"
START_TIMEOUT = 40.0


class Unavailable(Exception):
    """The real Docker cannot run here; the message is the reason (a test SKIPs with it)."""


@dataclass(frozen=True)
class Container:
    name: str
    pid: int   # host pid of the container's init
    ip: str    # "" without one (--network host|none|container:)

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"


def missing_software() -> str | None:
    """Why the real Docker cannot be tried at all, or None."""
    need = [p for p, pkg in ((DOCKERD, "docker.io"), (DOCKER, "docker.io"), ("/usr/bin/containerd", "containerd"),
                             ("/usr/sbin/runc", "runc"), (BUSYBOX, "busybox-static"))
            if not os.access(p, os.X_OK)]
    if need:
        return f"needs {', '.join(need)} (apt-get install docker.io busybox-static)"
    if not is_static(BUSYBOX):
        return f"{BUSYBOX} is dynamically linked: the container image needs busybox-static"
    for tool in ("unshare", "nsenter", "setpriv", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH"
    if os.geteuid() != 0:
        return "needs root: starts dockerd"
    return None


def preload_kernel_modules() -> list[str]:
    """Load br_netfilter where it is a module and not loaded yet; returns what was loaded.

    dockerd runs `modprobe br_netfilter` itself (so bridged traffic passes iptables, as
    on every Docker host), and a kernel module is host-global: it cannot be scoped to
    the throwaway namespace. Loading it before the host snapshot is taken keeps the
    snapshot about what the test leaves behind (the module adds net.bridge.* sysctls to
    every netns). Where bridge netfilter is built in (this project's kernel), nothing
    happens."""
    if os.path.isdir("/proc/sys/net/bridge") or shutil.which("modprobe") is None:
        return []
    done = subprocess.run(["modprobe", "br_netfilter"], capture_output=True, text=True, check=False)
    return ["br_netfilter"] if done.returncode == 0 else []


def is_static(path: str) -> bool:
    """An ELF executable without a PT_INTERP program header (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: Debian amd64/arm64
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def flavour_of(version_line: str) -> str:
    """`iptables -V` as printed inside dockerd's netns -> nft or legacy."""
    if "nf_tables" in version_line:
        return "nft"
    if "legacy" in version_line:
        return "legacy"
    raise ValueError(f"cannot tell the iptables flavour from {version_line!r}")


def _nspids(pid: int) -> list[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@dataclass
class RealDocker:
    userland_proxy: bool = True
    storage_driver: str = "overlay2"
    state: Path = field(init=False)
    cgroup_parent: str = field(init=False)
    flavour: str = field(init=False, default="")    # what Debian's `iptables` is: nft or legacy
    iptables_version: str = field(init=False, default="")
    started_s: float = field(init=False, default=0.0)  # seconds until dockerd answered
    pids: dict[str, int] = field(init=False, default_factory=dict)  # host/internet/lan/dockerd -> host pid
    containers: dict[str, Container] = field(init=False, default_factory=dict)
    _proc: subprocess.Popen | None = field(init=False, default=None)

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> RealDocker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        why = missing_software()
        if why:
            raise Unavailable(why)
        self.state = Path(tempfile.mkdtemp(prefix="nsbox-realdocker-"))
        self.cgroup_parent = f"/nsbox-realdocker-{os.getpid()}-{self.state.name[-8:]}"
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        (self.state / "dockercfg").mkdir()
        t0 = time.monotonic()
        out = open(self.state / "script.out", "w")
        # --kill-child: should this unshare be killed, its child (pid 1 inside) is
        # killed too, and with it every process of the pid namespace; --pdeathsig:
        # unshare is killed when the thread that started it ends (pytest SIGKILLed).
        self._proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
             "--propagation", "private", "bash", str(SCRIPT), str(self.state), self.cgroup_parent,
             "true" if self.userland_proxy else "false"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "STORAGE_DRIVER": self.storage_driver})
        out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = (self.state / "script.out").read_text()
            if "\nready" in text or text.startswith("ready"):
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(self._why_not(text))
            time.sleep(0.05)
        self.started_s = round(time.monotonic() - t0, 2)
        m = re.search(r"^pids (.*)$", text, re.M)
        inner = dict(kv.split("=") for kv in m.group(1).split()) if m else {}
        self.pids = {k: self.host_pid(int(v)) for k, v in inner.items()}
        v = re.search(r"^iptables (.*)$", text, re.M)
        self.iptables_version = v.group(1) if v else ""
        self.flavour = flavour_of(self.iptables_version)
        self._import_image()

    def _why_not(self, script_out: str) -> str:
        """A one-line reason, quoting dockerd's log where it says what went wrong."""
        log = ""
        try:
            log = (self.state / "dockerd.log").read_text()
        except OSError:
            pass
        bad = [ln for ln in log.splitlines() if re.search(r"level=(fatal|error)|failed to start", ln)]
        if bad:
            return f"dockerd did not start: {bad[-1].strip()}"
        tail = (script_out.strip().splitlines() or ["(no output)"])[-1]
        return f"dockerd did not start within {START_TIMEOUT:.0f} s: {tail}"

    def _import_image(self) -> None:
        """`docker import` a rootfs of busybox-static and its applet links: no registry."""
        tar = self.state / "rootfs.tar"
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        with tarfile.open(tar, "w") as t:
            for d in ("bin", "tmp", "etc"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                t.addfile(info)
            t.add(BUSYBOX, "bin/busybox")
            for a in applets:
                if a != "busybox":
                    info = tarfile.TarInfo(f"bin/{a}")
                    info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                    t.addfile(info)
        self.docker("import", "-c", "ENV PATH=/bin", str(tar), IMAGE)

    def stop(self) -> list[str]:
        """Tear everything down; returns what could not be removed (empty when clean)."""
        problems: list[str] = []
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None and self.containers:
                # SIGKILL the containers now: dockerd's own shutdown would wait 10 s for
                # each `sleep` (pid 1 of its container ignores SIGTERM).
                self.docker("rm", "-f", *self.containers, check=False, timeout=30)
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append("the namespace did not stop within 20 s; killed")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.containers.clear()
        self.pids.clear()
        if getattr(self, "cgroup_parent", ""):
            problems += remove_cgroups(self.cgroup_parent)
        if getattr(self, "state", None) is not None and self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
            if self.state.exists():
                problems.append(f"{self.state} not removed")
        return problems

    # ------------------------------------------------------------------ using it
    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        cp = subprocess.run([DOCKER, "-H", f"unix://{self.state}/docker.sock", *args], capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "DOCKER_CONFIG": str(self.state / "dockercfg")})
        if check and cp.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {cp.returncode}: {cp.stderr.strip()}")
        return cp.stdout.strip()

    def run(self, name: str, *options: str, cmd: tuple[str, ...] = ("sleep", "3600")) -> Container:
        """`docker run -d --name NAME OPTIONS bb CMD`; the container's netns is found by its pid."""
        self.docker("run", "-d", "--name", name, *options, IMAGE, *cmd)
        self.containers[name] = c = self.inspect(name)
        return c

    def inspect(self, name: str) -> Container:
        info = json.loads(self.docker("inspect", name))[0]
        nets = info["NetworkSettings"]["Networks"] or {}
        ip = next((n["IPAddress"] for n in nets.values() if n.get("IPAddress")), "")
        return Container(name, self.host_pid(info["State"]["Pid"]), ip)

    def host_pid(self, inner: int) -> int:
        """The pid, as this (the host's) pid namespace sees it, of the process that is
        INNER in dockerd's pid namespace: a descendant of our unshare whose NSpid's second
        entry is INNER."""
        assert self._proc is not None
        for _ in range(50):
            for p in _descendants(self._proc.pid):
                ns = _nspids(p)
                if len(ns) >= 2 and ns[1] == inner:
                    return p
            time.sleep(0.02)
        raise RuntimeError(f"no process is pid {inner} in dockerd's pid namespace")

    def processes(self) -> list[int]:
        """Host pids of every process in the namespace (dockerd, its proxies, containers...)."""
        assert self._proc is not None
        return _descendants(self._proc.pid)

    def netns(self, node: str) -> str:
        """/proc/PID/ns/net of NODE: host (dockerd's), internet, lan, or a container."""
        if node in self.containers:
            return self.containers[node].netns
        return f"/proc/{self.pids[node]}/ns/net"

    def netns_map(self) -> dict[str, str]:
        return {**{n: self.netns(n) for n in ("host", "internet", "lan")},
                **{n: c.netns for n, c in self.containers.items()}}

    def in_netns(self, node: str, *argv: str, check: bool = True) -> str:
        cp = subprocess.run(["nsenter", f"--net={self.netns(node)}", "--", *argv], capture_output=True,
                            text=True, timeout=30)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{node}: {' '.join(argv)}: exit {cp.returncode}: {cp.stderr.strip()}")
        return cp.stdout

    def iptables_save(self, node: str = "host", family: int = 4) -> str:
        """`iptables-<flavour>-save` in NODE: the backend dockerd wrote to (Debian's alternative)."""
        tool = f"{'ip6' if family == 6 else 'ip'}tables-{self.flavour}-save"
        return self.in_netns(node, tool)

    def remove_all(self) -> None:
        """`docker rm -f` every container and remove every user network: back to a
        daemon that has just started (what each rules scenario starts from)."""
        ids = self.docker("ps", "-aq").split()
        if ids:
            self.docker("rm", "-f", *ids)
        self.containers.clear()
        nets = [n for n in self.docker("network", "ls", "-q", "--filter", "type=custom").split() if n]
        if nets:
            self.docker("network", "rm", *nets)

    def dockerd_log(self) -> str:
        return (self.state / "dockerd.log").read_text()


def cgroup_dirs(parent: str) -> list[Path]:
    """Folders named PARENT under any cgroup hierarchy (v1 controllers, systemd, unified)."""
    rel = parent.lstrip("/")
    return [d for d in CGROUP_ROOT.glob(f"*/{rel}") if d.is_dir()] + \
        ([CGROUP_ROOT / rel] if (CGROUP_ROOT / rel).is_dir() else [])


def remove_cgroups(parent: str, within: float = 5.0) -> list[str]:
    """rmdir every folder under PARENT, deepest first; retried while the last
    processes of the killed namespace are still being reaped (EBUSY)."""
    deadline = time.monotonic() + within
    while True:
        left: list[str] = []
        for top in cgroup_dirs(parent):
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    left.append(f"{d}: {e.strerror}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def start_or_skip(preload: bool = False, **kw) -> RealDocker:
    """A started RealDocker(**KW), or the calling test skipped with the reason the real
    Docker cannot run here (software missing, or the daemon did not come up). PRELOAD:
    load the kernel modules dockerd would load first (preload_kernel_modules)."""
    import pytest

    why = missing_software()
    if why:
        pytest.skip(f"the real Docker cannot run here: {why}")
    if preload:
        preload_kernel_modules()
    d = RealDocker(**kw)
    try:
        d.start()
    except Unavailable as e:
        pytest.skip(f"the real Docker cannot run here: {e}")
    return d
