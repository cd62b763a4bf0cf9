"""`nsbox up / status / verify / exec / shell / down`: live labs to explore by hand.

`up` starts a holder (nsbox/live/holder.py) and records it in the user's
registry (nsbox/live/registry.py); the other commands find it there. `exec` and
`shell` enter a node's namespaces with util-linux nsenter: for a sandboxed lab
the user namespace first, which the kernel lets only the lab's owner (and root)
do; then the node process's mount, UTS, net and pid namespaces.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import time

from nsbox import retry, tools
from nsbox.errors import NsboxError, UsageError
from nsbox.live import registry
from nsbox.live.registry import Record

UP_TIMEOUT = 600.0  # seconds `up` waits for the holder to build (containers=1000 takes ~10 s)


def _err(msg: str, code: int = 2) -> None:
    print(f"nsbox: error: {msg}", file=sys.stderr)
    sys.exit(code)


def _directory() -> str | None:
    return registry.lab_dir(create=False)


def _record(name: str) -> tuple[str, Record]:
    registry.check_name(name)
    directory = _directory()
    rec = registry.read(directory, name) if directory else None
    if directory is None or rec is None:
        raise UsageError(f"no live lab {name!r} (nsbox status lists them)")
    return directory, rec


def _ask(directory: str, name: str, request: dict, timeout: float) -> dict:
    path = registry.paths(directory, name)[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise NsboxError(f"the holder of {name} did not answer")
    return json.loads(data)


# --------------------------------------------------------------------------- up

def up(recipe: str, name: str | None, sets: dict[str, str], on_host: bool, recipe_dirs: tuple[str, ...],
       part: tuple[str, ...] = (), underlays: tuple[str, ...] = ()) -> int:
    from nsbox import sandbox
    from nsbox.live import spawn

    if name is None:
        name = os.path.splitext(os.path.basename(recipe))[0]
        if not registry.NAME_RE.fullmatch(name):
            raise UsageError(f"cannot name a lab after {recipe!r}; give --name LAB")
    registry.check_name(name)
    if ("/" in recipe or recipe.endswith(".py")) and os.path.isfile(recipe):
        recipe = os.path.abspath(recipe)  # the holder runs in /
    if on_host and os.geteuid() != 0:
        raise UsageError("--on-host builds in the real host's namespaces and needs root")
    if not on_host:
        sandbox.preflight()
    part = tuple(n for p in part for n in p.split(",") if n)  # --part node1,outside or --part node1 --part outside
    kids = _part_children(recipe, sets, recipe_dirs, part, underlays)
    try:
        return _up(recipe, name, sets, on_host, recipe_dirs, part, kids)
    finally:
        if kids is not None:  # whatever the holder did not take (it failed, or Ctrl-C)
            kids.remove_leftovers()


def _part_children(recipe: str, sets: dict[str, str], recipe_dirs: tuple[str, ...], part: tuple[str, ...],
                   underlays: tuple[str, ...]):
    """--part: the part is checked against the recipe's model here, before anything is
    made, and the underlay children of its wires are made on this host (nsbox/live/parts.py)."""
    if underlays and not part:
        raise UsageError("--underlay goes with --part (the machines this host builds)")
    if not part:
        return None
    if os.geteuid() != 0:
        raise UsageError("--part needs root: it puts the lab's wires on this host's network")
    from nsbox import cli
    from nsbox.live import parts

    lab = cli.load_labs_jailed((recipe,), sets, recipe_dirs)[0]
    _lab, p = parts.split_validated(lab, part)
    return parts.make_children(parts.parse_underlays(underlays, p.crossings))


def _up(recipe: str, name: str, sets: dict[str, str], on_host: bool, recipe_dirs: tuple[str, ...],
        part: tuple[str, ...], kids) -> int:
    from nsbox.live import parts, spawn

    directory = registry.lab_dir(create=True)
    assert directory is not None
    old = registry.read(directory, name)
    if old is not None:
        if registry.is_alive(old):
            raise UsageError(f"lab {name!r} is up already (nsbox down {name})")
        _forget(directory, old)
    rec_path, sock_path, log_path = registry.paths(directory, name)
    ctl = _listen(sock_path, name)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    ready_r, ready_w = os.pipe()
    argv = ["_holder", recipe, "--name", name, "--ctl-fd", str(ctl.fileno()), "--ready-fd", str(ready_w)]
    for key, value in sorted(sets.items()):
        argv += ["--set", f"{key}={value}"]
    for d in recipe_dirs:
        argv += ["--recipes", os.path.abspath(d)]
    if on_host:
        argv.append("--on-host")
    for p in part:
        argv += ["--part", p]
    argv += kids.args if kids is not None else []
    try:
        pid = spawn.spawn(argv, [ctl.fileno(), ready_w], log_fd, sandboxed=not on_host)
    except BaseException:
        ctl.close()
        registry.remove(directory, name)
        raise
    finally:
        os.close(ready_w)
        os.close(log_fd)
    ctl.close()
    try:
        if kids is not None and kids.made and not on_host:
            inner = _sandbox_pid1(pid)  # the sandbox's network namespace exists once its pid 1 does
            if inner is None:
                raise NsboxError("the lab's sandbox ended before its underlay could be handed over")
            parts.hand_over(kids, inner)
        ready = _wait_ready(ready_r, pid)
    except BaseException:  # Ctrl-C while it builds: no holder may stay up without a record
        _abandon(pid, on_host)
        registry.remove(directory, name)
        registry.tidy(directory)
        raise
    if not ready.get("ok"):
        said = _tail(log_path)
        registry.remove(directory, name)
        registry.tidy(directory)
        msg = str(ready.get("error", "the lab's holder ended before the lab was up"))
        raise _HolderFailed(msg + (f" (it said: {said})" if said and ready.get("ours") else ""),
                            int(ready.get("exit", 1)))
    holder = pid if on_host else _sandbox_pid1(pid)
    start = registry.start_time(holder) if holder else None
    if holder is None or start is None:
        registry.remove(directory, name)
        raise NsboxError("the lab's holder ended right after it was up")
    node_pids = ready["nodes"] if on_host else _host_pids(holder, ready["nodes"])
    rec = Record(name=name, recipe=recipe, mode="on-host" if on_host else "sandbox", holder_pid=holder,
                 holder_start=start, outer_pid=pid,
                 nodes={n: [p, registry.start_time(p) or 0] for n, p in node_pids.items()},
                 netns=ready["netns"], containers=ready.get("containers", {}), sets=sets, uid=os.geteuid())
    registry.write(directory, rec)
    nodes = " ".join(rec.nodes)
    hints = [(f"nsbox shell {name} NODE", "a shell in NODE"), (f"nsbox exec {name} NODE -- CMD", "a command in NODE"),
             (f"nsbox verify {name}", "the recipe's checks, on the lab as it is now"),
             (f"nsbox down {name}", "the end of it")]
    width = max(len(h) for h, _ in hints)
    print(f"nsbox: {name} is up ({rec.mode}, recipe {recipe}; nodes: {nodes}).")
    for line in ready.get("part", []):
        print(f"  {line}")
    for h, what in hints:
        print(f"  {h.ljust(width)}  {what}")
    return 0


class _HolderFailed(NsboxError):
    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.exit_code = code


def _tail(path: str) -> str:
    """The holder's last line on stderr, for the one-line error."""
    try:
        with open(path, "rb") as f:
            lines = f.read()[-4000:].decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _listen(path: str, name: str) -> socket.socket:
    """The control socket, bound by `up` (as the user, 0600) and handed to the holder:
    inside the sandbox /run is private, so the holder could not bind it there."""
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise UsageError(f"lab {name!r} is being started or is up (nsbox status {name})")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        try:
            s.bind(path)
        except FileNotFoundError:  # a `down` elsewhere removed the empty directory just now
            registry.lab_dir(create=True)
            s.bind(path)
    except OSError as e:
        s.close()
        raise UsageError(f"cannot make the lab's socket {path}: {e.strerror or e}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    s.listen(16)
    return s


def _wait_ready(fd: int, pid: int) -> dict:
    deadline = time.monotonic() + UP_TIMEOUT
    data = b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return {"ok": False, "error": f"the lab was not up after {UP_TIMEOUT:g} s; stopped", "exit": 1, "ours": True}
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if not data:
        os.waitpid(pid, 0)
        return {"ok": False, "error": "the lab's holder ended before the lab was up", "exit": 1, "ours": True}
    answer = json.loads(data)
    if not answer.get("ok"):
        os.waitpid(pid, 0)
    return answer


def _abandon(pid: int, on_host: bool) -> None:
    """End a holder `up` started and will not record. Sandboxed: SIGKILL to unshare,
    whose --kill-child takes the sandbox's pid 1 and the kernel the lab. On the host:
    SIGTERM, which the holder turns into its teardown."""
    try:
        os.kill(pid, signal.SIGTERM if on_host else signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _sandbox_pid1(outer: int) -> int | None:
    from nsbox.sandbox.enter import _first_child

    return retry.until(lambda: _first_child(outer), lambda pid: pid is not None, within=1.0, every=0.02).value


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _host_pids(holder: int, inner: dict[str, int]) -> dict[str, int]:
    """Node processes by their pid in the sandbox -> their pid on the host (NSpid)."""
    by_inner: dict[int, int] = {}
    for child in _children(holder):
        try:
            with open(f"/proc/{child}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        ids = [int(x) for x in line.split()[1:]]
                        by_inner[ids[-1]] = ids[0]
        except OSError:
            pass
    missing = [n for n, p in inner.items() if p not in by_inner]
    if missing:
        raise NsboxError(f"cannot find the processes of nodes {', '.join(missing)}")
    return {n: by_inner[p] for n, p in inner.items()}


def _forget(directory: str, rec: Record) -> list[str]:
    """Remove the record of a lab whose holder is gone; --on-host, its namespaces too."""
    out = []
    if rec.mode == "on-host":
        from nsbox.host import onhost

        done = onhost.clean(False)
        out += done.out + done.errors
    registry.remove(directory, rec.name)
    return out


# --------------------------------------------------------------------------- status

def status(name: str | None, fmt: str) -> int:
    directory = _directory()
    if name is not None:
        _record(name)
    names = [name] if name else registry.names(directory)
    labs = []
    for n in names:
        try:
            rec = registry.read(directory, n) if directory else None
        except UsageError as e:
            print(f"nsbox: warning: {e}", file=sys.stderr)
            continue
        if rec is None:
            continue
        entry = {"name": rec.name, "recipe": rec.recipe, "mode": rec.mode, "holder_pid": rec.holder_pid,
                 "state": "up" if registry.is_alive(rec) else "gone", "nodes": {}}
        interfaces = {}
        if entry["state"] == "up" and directory:
            try:
                interfaces = _ask(directory, n, {"op": "status"}, 10).get("nodes", {})
            except (OSError, ValueError, NsboxError):
                entry["state"] = "not answering"
        for node, (pid, _start) in rec.nodes.items():
            entry["nodes"][node] = {"pid": pid, "netns": rec.netns.get(node),
                                    "interfaces": interfaces.get(node, [])}
        labs.append(entry)
    if fmt == "json":
        print(json.dumps({"schema_version": 1, "labs": labs}, indent=2))
    else:
        if not labs:
            print("no live labs (nsbox up RECIPE starts one)")
        for lab in labs:
            print(f"{lab['name']}  {lab['state']}  {lab['mode']}  recipe {lab['recipe']}  "
                  f"holder pid {lab['holder_pid']}")
            if lab["state"] == "gone":
                what = ("`nsbox down {0}` (or `nsbox clean`) removes whatever it left on the host"
                        if lab["mode"] == "on-host" else "the kernel removed the lab with it; "
                        "`nsbox down {0}` removes the record")
                print("  its holder is gone; " + what.format(lab["name"]))
                continue
            width = max((len(n) for n in lab["nodes"]), default=0)
            for node, info in lab["nodes"].items():
                # one interface a line (lo left out unless it is all there is)
                ifaces = [i for i in info["interfaces"] if i["ifname"] != "lo"] or info["interfaces"]
                for k, i in enumerate(ifaces or [{"ifname": "-", "state": "", "addresses": []}]):
                    line = f"  {node if k == 0 else '':<{width}}  {i['ifname']:<12} {i['state']:<7} "
                    print((line + " ".join(i["addresses"])).rstrip())
    gone = name is not None and labs and labs[0]["state"] != "up"
    return 1 if gone else 0


# --------------------------------------------------------------------------- verify

def verify(name: str, fmt: str, timeout: float) -> int:
    directory, rec = _record(name)
    if not registry.is_alive(rec):
        raise NsboxError(f"lab {name!r} is gone (its holder ended); `nsbox down {name}` removes it")
    answer = _ask(directory, name, {"op": "verify", "format": fmt, "timeout": timeout}, UP_TIMEOUT)
    if not answer.get("ok"):
        raise NsboxError(str(answer.get("error", "verify failed")))
    sys.stdout.write(answer["report"])
    for line in answer.get("note", []):  # a part of a lab across machines: what it checked, what it left
        print(f"nsbox: {line}", file=sys.stderr)
    return int(answer["exit"])


# --------------------------------------------------------------------------- exec / shell

def enter_argv(rec: Record, node: str, cmd: list[str]) -> list[str]:
    """nsenter into NODE of a live lab (its user namespace first when sandboxed)."""
    node = rec.containers.get(node, node)
    if node not in rec.nodes:
        known = ", ".join([*rec.nodes, *(c for c in rec.containers if c not in rec.nodes)])
        raise UsageError(f"lab {rec.name} has no node or container {node!r} (it has: {known})")
    pid, start = rec.nodes[node]
    if not registry.is_alive(rec) or not registry.alive(pid, start):
        raise NsboxError(f"lab {rec.name!r} is gone (its holder ended); `nsbox down {rec.name}` removes it")
    spaces = ["--mount", "--uts", "--net"]
    if rec.mode == "sandbox":
        # An unprivileged owner is root in the lab's user namespace already (its uid maps
        # to 0) and may not call setgroups there (denied, the kernel's rule for its maps).
        creds = ["--preserve-credentials"] if os.geteuid() != 0 else []
        spaces = ["--user", *creds, *spaces, "--pid"]
        if os.geteuid() != 0:  # setgroups "succeeds" there, so `tcpdump -Z root` works
            cmd = [sys.executable, "-I", os.path.join(os.path.dirname(os.path.abspath(__file__)), "nogroups.py"),
                   *cmd]
    # In the directory the user is in (a capture written with tcpdump -w lands there),
    # unless that is private to the host side (the sandbox has its own /run).
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    wd = [f"--wd={cwd}"] if cwd != "/run" and not cwd.startswith("/run/") and "\n" not in cwd else []
    return [tools.need("nsenter", "util-linux"), f"--target={pid}", *spaces, *wd, "--", *cmd]


def exec_(name: str, node: str, cmd: list[str], shell: bool = False) -> None:
    _directory_, rec = _record(name)
    registry.check_name(node, "node name")
    env = dict(os.environ)
    env["NSBOX_LAB"], env["NSBOX_NODE"] = rec.name, node
    if shell:
        bash = shutil.which("bash")
        cmd = [bash, "--norc", "--noprofile", "-i"] if bash else ["sh", "-i"]
        env["PS1"] = f"({rec.name} {node})# "
    argv = enter_argv(rec, node, cmd)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


# --------------------------------------------------------------------------- down

def down(names: tuple[str, ...], every: bool) -> int:
    directory = _directory()
    if every:
        names = tuple(registry.names(directory))
    elif not names:
        raise UsageError("nsbox down LAB... (or --all)")
    for n in names:
        _record(n)
    failed = False
    for n in names:
        assert directory is not None
        rec = registry.read(directory, n)
        if rec is None:
            continue
        if registry.is_alive(rec):
            failed |= not _stop(directory, rec)
        else:
            for line in _forget(directory, rec):
                print(line)
            print(f"nsbox: {n} was gone; its record is removed")
    registry.tidy(directory)
    return 1 if failed else 0


def _stop(directory: str, rec: Record) -> bool:
    ok = True
    try:
        answer = _ask(directory, rec.name, {"op": "down"}, 120)
        for p in answer.get("problems", []):
            print(f"nsbox: {rec.name}: teardown: {p}", file=sys.stderr)
        ok = bool(answer.get("ok"))
    except (OSError, ValueError, NsboxError) as e:
        print(f"nsbox: {rec.name}: the holder did not answer ({e}); ending it", file=sys.stderr)
        ok = False
    retry.until(lambda: registry.is_alive(rec), lambda alive: not alive, within=10, every=0.05)
    if registry.is_alive(rec):
        os.kill(rec.holder_pid, signal.SIGKILL)  # the kernel removes a sandbox with its pid 1
        ok = False
        while registry.is_alive(rec):
            time.sleep(0.05)
    for line in (_forget(directory, rec) if rec.mode == "on-host" and not ok else []):
        print(line)
    registry.remove(directory, rec.name)
    print(f"nsbox: {rec.name} is down")
    return ok


def sweep() -> list[str]:
    """For `nsbox clean`: remove the records of this user's labs whose holder is gone."""
    directory = _directory()
    out = []
    for n in registry.names(directory):
        assert directory is not None
        try:
            rec = registry.read(directory, n)
        except UsageError:
            continue
        if rec is not None and not registry.is_alive(rec):
            registry.remove(directory, n)
            out.append(f"removed the record of live lab {n} (its holder was gone)")
    registry.tidy(directory)
    return out
