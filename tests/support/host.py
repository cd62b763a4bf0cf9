"""The guard of the real host: what it looks like before a kernel test, and what changed after.

`HostSnapshot` records the host's named netns, links, addresses, routes, iptables (legacy and
nft, v4 and v6), mounts, host sysctls, lab conntrack entries and /run/nsbox; `HostGuard`
compares it after the test, together with the processes the test left running (support.procs).
Any difference fails the test with a readable diff, and `clean_up_leaks` removes what the test
left so that one leak does not fail every later test.

Only sets of items are compared (iptables: lines in order), never counters, lifetimes or
timestamps, so unrelated churn on the host (DHCP refreshing a lease, conntrack entries
expiring) does not count as a leak. Other users' labs are left out (support.foreign).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

from tests.support.cmd import cmd as _cmd
from tests.support.cmd import lines as _lines
from tests.support.foreign import JOURNAL_DIR, ONHOST_NETNS, _lab_of, _shared, foreign_labs
from tests.support.procs import become_subreaper, descendants, wait_until

# Addresses only a lab uses; a conntrack entry with one of them in the REAL host means a leak.
LAB_ADDRESS_PREFIXES = ("172.17.", "203.0.113.")

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


def failure_text(what: str, found: list[str]) -> str:
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
            pytest.fail(failure_text(what, found), pytrace=False)

    def problems(self, within: float = 5.0) -> list[str]:
        return host_diff(self.before, self.procs_before, within)

    def clean_up(self) -> None:
        clean_up_leaks(self.before, self.procs_before)

    @classmethod
    def now(cls) -> HostGuard:
        become_subreaper()
        return cls(HostSnapshot.take(), frozenset(descendants()))
