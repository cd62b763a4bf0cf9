"""Shared fixtures for the kernel tests (tests/test_kernel_*.py).

The kernel tests build real labs, so each one is watched by an independent
observer of the REAL host: `HostSnapshot` records the host's named netns,
links, addresses, routes, iptables (legacy and nft, v4 and v6), mounts, lab
conntrack entries and /run/nsbox before the test, and the autouse fixture
`host_unchanged` compares it after the test, together with the processes the
test left running. Any difference fails the test with a readable diff.

Only sets of items are compared (iptables: lines in order), never counters,
lifetimes or timestamps, so unrelated churn on the host (DHCP refreshing a
lease, conntrack entries expiring) does not count as a leak.

The host is shared (another suite, a developer's live lab): a test judges and
cleans only what it made. An --on-host lab whose nsbox runs and is not a
descendant of this test process is another's (`foreign_labs`), and so is every
lab already there when the test started: their namespaces, journals and pins
are ignored by the diff and never touched by the clean-up, and so are the items
all labs share (/run/netns, its self-bind mount, /run/nsbox's markers) while
such a lab is seen. A lab that appears during the test and whose nsbox is gone
counts as the test's own (a leak is never excused): the one case this misjudges
is another user's lab killed with SIGKILL during the test.

Unit tests (tests/test_unit_*.py) are not affected by anything here.
"""

from __future__ import annotations

import ctypes
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

REPO = Path(__file__).resolve().parents[1]
OBSERVERS = Path(__file__).resolve().parent / "observers"
IS_ROOT = os.geteuid() == 0
NEEDS_ROOT = "needs root: builds network namespaces, veth pairs and iptables rules"

# Addresses only a lab uses; a conntrack entry with one of them in the REAL host means a leak.
LAB_ADDRESS_PREFIXES = ("172.17.", "203.0.113.")
# Names an --on-host lab gives its namespaces (netns.new_prefix: "nsb" + 12 hex + "-").
ONHOST_NETNS = re.compile(r"^nsb[0-9a-f]{12}-")
JOURNAL_DIR = Path("/run/nsbox")
# The lab prefix a name starts with ("nsb" + 12 hex), anywhere in a path or a mount point.
_LAB_PREFIX = re.compile(r"(?:^|/)(nsb[0-9a-f]{12})-")


# --------------------------------------------------------------------------- markers

def _default_ending_signals() -> None:
    """The suite's children start with SIGHUP, SIGINT and SIGTERM at their defaults, however
    the suite itself was started: `nohup`, or a background job of a non-interactive shell,
    ignores SIGHUP / SIGINT, and exec keeps an ignored signal ignored, so every signal test
    would test the launcher instead of nsbox. A test that wants an inherited SIG_IGN (the
    nohup test) sets it in its own child."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    _default_ending_signals()
    config.addinivalue_line("markers", "kernel: builds real namespaces; needs root")
    config.addinivalue_line("markers", "tools(*names): skip the test unless these programs are on PATH")
    _check_nsbox_is_this_checkout()


def _check_nsbox_is_this_checkout() -> None:
    """The suite tests this checkout's code, never an installed copy (install.sh installs a
    copy, not an editable link): `python -m pytest` from the checkout imports its nsbox first,
    a bare `pytest` script may not (its plugin entry point imports nsbox before any conftest)."""
    import nsbox
    where = Path(nsbox.__file__).resolve().parent
    if where != REPO / "nsbox":
        pytest.exit(f"the tests imported nsbox from {where}, not from this checkout ({REPO}): run "
                    f"`python -m pytest` from {REPO} (or set PYTHONPATH={REPO})", returncode=2)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("tools"):
        missing = [t for t in mark.args if shutil.which(t) is None]
        if missing:
            pytest.skip(f"needs {', '.join(missing)} on PATH (apt install iproute2 iptables conntrack "
                        f"iputils-ping curl util-linux)")


def _is_kernel_test(request: pytest.FixtureRequest) -> bool:
    return Path(str(request.node.fspath)).name.startswith("test_kernel_")


# --------------------------------------------------------------------------- running things

def _cmd(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _lines(cp: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in cp.stdout.splitlines() if ln.strip()]


# --------------------------------------------------------------------------- processes

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of our descendants are re-parented to us, not to init.

    So a process that nsbox (or its --then command) leaves behind after its
    parent died is still found as our descendant, instead of escaping to pid 1.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of PID, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw.rsplit(")", 1)[1].split()
    return rest[0], int(rest[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(root: int | None = None) -> dict[int, str]:
    """Living (non-zombie) descendants of ROOT (default: this process): pid -> command line.

    Zombies that are our own children (orphans we adopted as subreaper) are reaped.
    """
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None:
            continue
        states[int(name)] = st[0]
        children.setdefault(st[1], []).append(int(name))
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if states.get(pid) == "Z":
            if root == os.getpid() and _stat(pid) is not None and _stat(pid)[1] == root:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            continue
        out[pid] = _cmdline(pid)
    return out


def pid_alive(pid: int) -> bool:
    st = _stat(pid)
    if st is None:
        return False
    if st[0] == "Z":
        if st[1] == os.getpid():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return False
    return True


def dump_sections(text: str) -> dict[str, str]:
    """A --then dump that marks its parts with `@@ NAME` lines, as {NAME: text}."""
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        m = re.fullmatch(r"@@ (\S+)", line)
        if m:
            key = m.group(1)
            out[key] = ""
        elif key is not None:
            out[key] += line + "\n"
    return out


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Poll PREDICATE until it returns something truthy or TIMEOUT passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------- other users' labs

def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_ours(pid: int, me: int) -> bool:
    """PID is ME or a descendant of ME (followed up the parent chain)."""
    seen = 0
    while pid > 1 and seen < 512:
        if pid == me:
            return True
        st = _stat(pid)
        if st is None:
            return False
        pid, seen = st[1], seen + 1
    return pid == me


def _journal_owners(path: Path, locks: dict[int, set[int]]) -> set[int]:
    """Living pids that own the journal PATH: the owner entry's pid where its start time still
    matches (so a reused pid does not count), and whoever holds a lock on the file
    (/proc/locks). Read only as far as needed: the journal format is nsbox's, not ours."""
    owners = set()
    try:
        ino = path.stat().st_ino
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return owners
    owners |= locks.get(ino, set())
    for line in head.splitlines()[:4]:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and str(e.get("pid", "")).isdigit():
            pid = int(e["pid"])
            if _start_time(pid) is not None and str(e.get("start", "")) == _start_time(pid):
                owners.add(pid)
    return owners


def _lock_holders() -> dict[int, set[int]]:
    """inode -> pids holding a lock on it (/proc/locks: '1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...')."""
    out: dict[int, set[int]] = {}
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[4].lstrip("-").isdigit() and int(f[4]) > 0 and f[5].count(":") == 2:
            out.setdefault(int(f[5].rsplit(":", 1)[1]), set()).add(int(f[4]))
    return out


def foreign_labs(me: int | None = None) -> frozenset[str]:
    """Prefixes ("nsb" + 12 hex) of the --on-host labs under /run/nsbox that belong to someone
    else: their nsbox still runs and is not ME (default: this process) or a descendant of it.

    A lab whose owner is gone (left behind) is not foreign: if it appeared during a test it
    is that test's leak. A lab of ours is told apart by ancestry, which holds for every nsbox
    a test starts (directly, through sudo/setpriv, or orphaned: the test is a subreaper)."""
    me = os.getpid() if me is None else me
    out = set()
    try:
        journals = [p for p in JOURNAL_DIR.iterdir() if ONHOST_NETNS.match(p.name)]
    except OSError:
        return frozenset()
    locks = _lock_holders() if journals else {}
    for p in journals:
        owners = _journal_owners(p, locks)
        if owners and not any(_is_ours(pid, me) for pid in owners):
            out.add(p.name[:15])
    return frozenset(out)


def _lab_of(item: object) -> str | None:
    """The lab prefix an item of a snapshot names (a netns, a journal, a pin), if any."""
    m = _LAB_PREFIX.search(item if isinstance(item, str) else " ".join(map(str, item))
                           if isinstance(item, tuple) else str(item))
    return m.group(1) if m else None


# Items every --on-host lab shares: whichever lab made them, the last one out removes them.
_SHARED_FACETS = ("/run/netns directory",)
_SHARED_MARKERS = ("netns-dir-created", "netns-mount-created")  # nsbox.host.onhost's markers


def _shared(facet: str, item: object) -> bool:
    if facet in _SHARED_FACETS:
        return True
    if facet.startswith("mounts") and isinstance(item, tuple) and item and item[0] == "/run/netns":
        return True  # /run/netns bound onto itself so that its pins propagate
    return facet == "/run/nsbox entries" and item in _SHARED_MARKERS


# --------------------------------------------------------------------------- the host snapshot

_IPTABLES_SAVES = ("iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save")
_ROUTE_VOLATILE = {"expires", "cacheinfo", "metrics"}


def normalize_iptables_save(text: str) -> tuple[str, ...]:
    """iptables-save output without comments, blank lines and counters."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            line = re.sub(r"\s*\[\d+:\d+\]$", "", line)
        line = re.sub(r"^\[\d+:\d+\]\s+", "", line)  # `-c` style rule counters
        out.append(line)
    return tuple(out)


def lab_conntrack_keys(text: str) -> frozenset[str]:
    """`conntrack -L` lines that mention a lab address, reduced to protocol + tuples.

    Timeouts, states, flags, marks and use counts are dropped: they change by themselves.
    """
    keys = set()
    for line in text.splitlines():
        if not any(f"={p}" in line for p in LAB_ADDRESS_PREFIXES):
            continue
        tokens = line.split()
        if not tokens:
            continue
        kept = [tokens[0]] + [t for t in tokens if t.split("=", 1)[0] in
                               ("src", "dst", "sport", "dport", "type", "code", "id")]
        keys.add(" ".join(kept))
    return frozenset(keys)


def _mounts() -> frozenset[tuple[str, str, str]]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(lf) >= 5 and len(rf) >= 2:
            out.add((lf[4], rf[0], rf[1]))  # mount point, fs type, source
    return frozenset(out)


_SYSCTL_DIRS = ("net/ipv4", "net/ipv4/conf/all", "net/ipv4/conf/default", "net/ipv6/conf/all",
                "net/ipv6/conf/default", "net/core", "net/netfilter", "net/bridge", "net/unix")
# Counters and caches that change by themselves.
_SYSCTL_VOLATILE = ("nf_conntrack_count", "tcp_fastopen_key", "stable_secret")


def _host_sysctls() -> frozenset[str]:
    """The real host's per-namespace network settings: a recipe that wrote, say,
    /proc/sys/net/ipv4/ip_forward in the host's namespace shows up here."""
    out = set()
    for d in _SYSCTL_DIRS:
        base = Path("/proc/sys") / d
        try:
            entries = sorted(base.iterdir())
        except OSError:
            continue
        for f in entries:
            if f.name in _SYSCTL_VOLATILE or not f.is_file():
                continue
            try:
                value = " ".join(f.read_text().split())
            except OSError:
                continue
            out.add(f"{d.replace('/', '.')}.{f.name} = {value}")
    return frozenset(out)


def _capped(lines: list[str], limit: int = 12) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"    ... and {len(lines) - limit} more"]


@dataclass(frozen=True)
class HostSnapshot:
    """What the real host looks like, as sets of comparable items per facet."""

    sets: dict[str, frozenset] = field(default_factory=dict)         # compared as sets
    ordered: dict[str, tuple[str, ...]] = field(default_factory=dict)  # compared line by line
    grow_only: dict[str, frozenset] = field(default_factory=dict)    # only new items count
    foreign: frozenset[str] = frozenset()  # other users' live labs then (foreign_labs): not judged
    labs: frozenset[str] = frozenset()     # every on-host lab prefix present then (netns, journals)

    @classmethod
    def take(cls) -> HostSnapshot:
        sets: dict[str, frozenset] = {}
        ordered: dict[str, tuple[str, ...]] = {}
        grow: dict[str, frozenset] = {}

        sets["named netns (ip netns list)"] = frozenset(ln.split()[0] for ln in _lines(_cmd(["ip", "netns", "list"])))
        links = json.loads(_cmd(["ip", "-j", "link", "show"]).stdout or "[]")
        sets["links (ip -j link)"] = frozenset(f"{ln['ifindex']}: {ln['ifname']}" for ln in links)
        addrs = json.loads(_cmd(["ip", "-j", "addr", "show"]).stdout or "[]")
        sets["addresses (ip -j addr)"] = frozenset(
            f"{ln['ifname']} {a.get('family')} {a.get('local')}/{a.get('prefixlen')} scope {a.get('scope')}"
            for ln in addrs for a in ln.get("addr_info", []))
        for fam in ("-4", "-6"):
            routes = json.loads(_cmd(["ip", fam, "-j", "route", "show", "table", "all"]).stdout or "[]")
            sets[f"routes (ip {fam} -j route show table all)"] = frozenset(
                json.dumps({k: v for k, v in r.items() if k not in _ROUTE_VOLATILE}, sort_keys=True)
                for r in routes)
        for tool in _IPTABLES_SAVES:
            if shutil.which(tool) is None:
                continue
            cp = _cmd([tool])
            lines = normalize_iptables_save(cp.stdout)
            if cp.returncode != 0:
                lines += (f"<{tool} exited {cp.returncode}: {cp.stderr.strip().splitlines()[:1]}>",)
            ordered[tool] = lines
        if shutil.which("ipset"):  # ipsets are per netns: a lab's must go with its namespace
            sets["ipsets of the host netns (ipset list -n)"] = frozenset(_lines(_cmd(["ipset", "list", "-n"])))
        sets["mounts (/proc/self/mountinfo: mount point, fs type, source)"] = _mounts()
        sets["host sysctls (/proc/sys/net)"] = _host_sysctls()
        try:
            entries = sorted(p.name for p in JOURNAL_DIR.iterdir())
        except FileNotFoundError:
            entries = []
        sets["/run/nsbox entries"] = frozenset(entries)
        # --on-host creates /run/netns where it is missing; it must go again with the lab.
        sets["/run/netns directory"] = frozenset(["exists"] if os.path.isdir("/run/netns") else [])
        if shutil.which("conntrack"):
            cp = _cmd(["conntrack", "-L"])
            grow["conntrack entries with lab addresses (conntrack -L)"] = lab_conntrack_keys(cp.stdout)
        present = {_lab_of(i) for facet in ("named netns (ip netns list)", "/run/nsbox entries") for i in sets[facet]}
        return cls(sets, ordered, grow, foreign_labs(), frozenset(present - {None}))

    def diff(self, after: HostSnapshot) -> list[str]:
        """Readable differences from SELF (before) to AFTER; empty when the host is unchanged."""
        out: list[str] = []
        # Not judged: labs of others running now or then, and every lab that was already
        # there before (a stale one may be removed by anybody's `nsbox clean` meanwhile).
        foreign = self.foreign | after.foreign | self.labs

        def judged(facet: str, items: frozenset) -> frozenset:
            """Without other users' labs' items, and without the shared ones while any is seen."""
            if not foreign:
                return items
            return frozenset(i for i in items if _lab_of(i) not in foreign and not _shared(facet, i))
        for facet in sorted(set(self.sets) | set(after.sets)):
            b, a = judged(facet, self.sets.get(facet, frozenset())), judged(facet, after.sets.get(facet, frozenset()))
            if a != b:
                out.append(f"{facet}:")
                out += _capped([f"    + {x}" for x in sorted(a - b, key=str)])
                out += _capped([f"    - {x}" for x in sorted(b - a, key=str)])
        for facet in sorted(set(self.ordered) | set(after.ordered)):
            b, a = self.ordered.get(facet, ()), after.ordered.get(facet, ())
            if a != b:
                out.append(f"{facet}:")
                out += _capped(["    " + d for d in difflib.unified_diff(list(b), list(a), "before", "after",
                                                                  lineterm="")], 40)
        for facet in sorted(set(self.grow_only) | set(after.grow_only)):
            new = after.grow_only.get(facet, frozenset()) - self.grow_only.get(facet, frozenset())
            if new:
                out.append(f"{facet}:")
                out += _capped([f"    + {x}" for x in sorted(new)])
        return out


def host_diff(before: HostSnapshot, procs_before: Iterable[int] = (), within: float = 5.0) -> list[str]:
    """Differences between BEFORE and the host now, given WITHIN seconds to settle
    (a killed sandbox is destroyed by the kernel asynchronously)."""
    procs_before = set(procs_before)

    def problems() -> list[str]:
        out = before.diff(HostSnapshot.take())
        left = {p: c for p, c in descendants().items() if p not in procs_before}
        if left:
            out.append("processes still running (descendants of the test process):")
            out += [f"    {pid}: {cmd}" for pid, cmd in sorted(left.items())]
        return out

    found = problems()
    deadline = time.monotonic() + within
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = problems()
    return found


def clean_up_leaks(before: HostSnapshot, procs_before: Iterable[int] = ()) -> None:
    """Best effort: remove what a failed test left, so one leak does not fail every later test."""
    procs_before = set(procs_before)
    for pid in descendants():
        if pid not in procs_before:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait_until(lambda: not [p for p in descendants() if p not in procs_before], 5)
    # Never another's: its live labs now or at the start, and what all labs share while one runs.
    foreign = before.foreign | foreign_labs()
    known = before.sets.get("named netns (ip netns list)", frozenset())
    for line in _lines(_cmd(["ip", "netns", "list"])):
        name = line.split()[0]
        if name not in known and _lab_of(name) not in foreign and (
                ONHOST_NETNS.match(name) or name.startswith("nsbprobe-") or name.startswith("nsbtest-")):
            _cmd(["ip", "netns", "delete", name])
    known_journal = before.sets.get("/run/nsbox entries", frozenset())
    if JOURNAL_DIR.is_dir():
        for p in JOURNAL_DIR.iterdir():
            if p.name in known_journal or _lab_of(p.name) in foreign:
                continue
            if foreign and _shared("/run/nsbox entries", p.name):
                continue
            if p.is_dir() or p.is_symlink() or not p.is_file():
                continue  # e.g. labs/, the live labs' registry: not a journal, never ours to delete
            p.unlink(missing_ok=True)


def _failure_text(what: str, found: list[str]) -> str:
    return f"{what}:\n" + "\n".join("  " + ln for ln in found)


@dataclass
class HostGuard:
    """The real host before a test, and a way to assert it is back to that state."""

    before: HostSnapshot
    procs_before: frozenset[int]

    def assert_clean(self, within: float = 5.0, what: str = "the real host changed") -> None:
        found = host_diff(self.before, self.procs_before, within)
        if found:
            self.clean_up()  # fail this test only: the autouse check after it should find nothing
            pytest.fail(_failure_text(what, found), pytrace=False)

    def problems(self, within: float = 5.0) -> list[str]:
        return host_diff(self.before, self.procs_before, within)

    def clean_up(self) -> None:
        clean_up_leaks(self.before, self.procs_before)

    @classmethod
    def now(cls) -> HostGuard:
        become_subreaper()
        return cls(HostSnapshot.take(), frozenset(descendants()))


@pytest.fixture(autouse=True)
def host_unchanged(request: pytest.FixtureRequest):
    """Autouse for test_kernel_* tests run as root: the real host must look the same after
    the test as before it (netns, links, addresses, routes, iptables, mounts, conntrack,
    /run/nsbox), and no process the test started may still run."""
    if not (IS_ROOT and _is_kernel_test(request)):
        yield None
        return
    guard = HostGuard.now()
    yield guard
    found = guard.problems(within=5.0)
    if found:
        guard.clean_up()
        pytest.fail(_failure_text("the test left the real host changed", found), pytrace=False)


# --------------------------------------------------------------------------- running nsbox

@dataclass
class NsboxRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"stdout is not one JSON object ({e}):\n{self.describe()}") from None

    @property
    def result(self) -> dict:
        results = self.json["results"]
        assert len(results) == 1, results
        return results[0]

    def checks(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.result["checks"]}

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}"
                f"\n--- stderr\n{self.stderr[-4000:]}")


class Nsbox:
    """Runs `python -m nsbox` from this checkout, as the user would."""

    def __init__(self, python: str = sys.executable, cwd: Path = REPO) -> None:
        self.python = python
        self.cwd = cwd

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
        env["PYTHONPATH"] = str(self.cwd)
        env.update(extra or {})
        return env

    def argv(self, args: Iterable[str]) -> list[str]:
        return [self.python, "-m", "nsbox", *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> NsboxRun:
        argv = self.argv(args)
        try:
            cp = subprocess.run(argv, cwd=self.cwd, env=self.env(env), capture_output=True, text=True,
                                timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"nsbox did not finish within {timeout} s: {' '.join(argv)}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        return NsboxRun(argv, cp.returncode, cp.stdout, cp.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start nsbox in its own process group (so a test can signal the group like Ctrl-C does)."""
        return subprocess.Popen(self.argv(args), cwd=self.cwd, env=self.env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)


# Drop this mount namespace's copies of whatever the host has mounted under /run
# (other labs' pins, their /run/netns) so they do not show in its mountinfo, then
# mount an empty tmpfs. The namespace is private: nothing here reaches the host.
_PRIVATE_RUN = """
findmnt -rn -o TARGET | awk '$1 == "/run" || index($1, "/run/") == 1' | sort -r |
    while read -r m; do umount -l "$m" || exit 99; done
mount -t tmpfs -o mode=0755 nsbox-test /run || exit 99
"""


def in_private_run(script: str, out: Path, env: dict[str, str] | None = None,
                   timeout: float = 180) -> subprocess.CompletedProcess:
    """Run bash SCRIPT in a mount namespace of its own whose /run is a fresh, empty
    tmpfs: no /run/netns, no /run/nsbox, nothing of the other labs running on this
    host. The namespaces it makes are real ones of the real kernel, pinned only
    in that mount namespace, so the kernel frees them all when the script ends,
    even if the test fails. $NSBOX runs this checkout's nsbox, $OUT (= OUT, a
    directory outside /run) is where the script leaves what a test asserts on."""
    env = {**Nsbox().env(env), "NSBOX": f"{sys.executable} -m nsbox", "OUT": str(out)}
    argv = ["unshare", "--mount", "--propagation", "private", "bash", "-uc",
            _PRIVATE_RUN + script]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def nsbox() -> Nsbox:
    return Nsbox()


@pytest.fixture(scope="session")
def observers() -> Path:
    return OBSERVERS


# --------------------------------------------------------------------------- helpers for the kernel tests

class Kernel:
    """What the kernel tests share, handed out by the `kernel` fixture."""

    REPO = REPO
    OBSERVERS = OBSERVERS
    ONHOST_NETNS = ONHOST_NETNS
    JOURNAL_DIR = JOURNAL_DIR
    HostGuard = HostGuard
    HostSnapshot = HostSnapshot
    foreign_labs = staticmethod(foreign_labs)
    in_private_run = staticmethod(in_private_run)
    Nsbox = Nsbox
    NsboxRun = NsboxRun

    descendants = staticmethod(descendants)
    normalize_iptables_save = staticmethod(normalize_iptables_save)
    lab_conntrack_keys = staticmethod(lab_conntrack_keys)
    pid_alive = staticmethod(pid_alive)
    wait_until = staticmethod(wait_until)

    @staticmethod
    def netns_list() -> list[str]:
        return [ln.split()[0] for ln in _lines(_cmd(["ip", "netns", "list"]))]

    @staticmethod
    def find_descendant(root: int, argv0: str) -> int | None:
        """The pid of a living descendant of ROOT whose command starts with ARGV0."""
        for pid, cmd in descendants(root).items():
            if cmd.split(" ", 1)[0] == argv0:
                return pid
        return None


@pytest.fixture(scope="session")
def kernel() -> type[Kernel]:
    return Kernel


def shipped_recipe_import(alias: str, recipe_file: str) -> str:
    """The lines a test's own recipe file starts with to build on a shipped recipe (a
    mutant): import recipes/RECIPE_FILE by path as ALIAS, and nsbox's @recipe."""
    return (f"import importlib.util\n\nfrom nsbox.recipe import recipe\n\n"
            f"spec = importlib.util.spec_from_file_location({alias!r}, {str(REPO / 'recipes' / recipe_file)!r})\n"
            f"{alias} = importlib.util.module_from_spec(spec)\nspec.loader.exec_module({alias})\n\n\n")
