"""Other users' labs: the on-host labs on this machine that a test must neither judge nor touch.

The host is shared (another suite, a developer's live lab): a test judges and cleans only
what it made. An --on-host lab whose nsbox runs and is not a descendant of this test process
is another's (`foreign_labs`), and so is every lab already there when the test started: their
namespaces, journals and pins are ignored by the guard's diff and never touched by the
clean-up, and so are the items all labs share (/run/netns, its self-bind mount, /run/nsbox's
markers) while such a lab is seen. A lab that appears during the test and whose nsbox is gone
counts as the test's own (a leak is never excused): the one case this misjudges is another
user's lab killed with SIGKILL during the test.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.support.procs import _stat

# Names an --on-host lab gives its namespaces (netns.new_prefix: "nsb" + 12 hex + "-").
ONHOST_NETNS = re.compile(r"^nsb[0-9a-f]{12}-")
JOURNAL_DIR = Path("/run/nsbox")
LIVE_REGISTRY = JOURNAL_DIR / "labs"  # root's live labs (nsbox up): one record each
# Stands in `foreign_labs()` for "a live lab of someone else is registered": it is no lab
# prefix, so it excuses no namespace or journal, only the items all labs share (_shared).
FOREIGN_LIVE_LAB = "live-lab-registry"
# The lab prefix a name starts with ("nsb" + 12 hex), anywhere in a path or a mount point.
_LAB_PREFIX = re.compile(r"(?:^|/)(nsb[0-9a-f]{12})-")


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


def _foreign_live_lab(me: int, registry: Path) -> bool:
    """A live lab (`nsbox up`, as root) whose holder still runs and is not ME's descendant is
    registered in REGISTRY. The record's format is nsbox's: read only `holder_pid` and
    `holder_start` (the holder's start time, so a reused pid does not count)."""
    try:
        records = [p for p in registry.iterdir() if p.suffix == ".json"]
    except OSError:
        return False
    for p in records:
        try:
            e = json.loads(p.read_text()[:65536])
        except (OSError, ValueError):
            continue
        pid = e.get("holder_pid") if isinstance(e, dict) else None
        if isinstance(pid, int) and pid > 0 and _start_time(pid) == str(e.get("holder_start")) \
                and not _is_ours(pid, me):
            return True
    return False


def foreign_labs(me: int | None = None, registry: Path = LIVE_REGISTRY) -> frozenset[str]:
    """Prefixes ("nsb" + 12 hex) of the --on-host labs under /run/nsbox that belong to someone
    else: their nsbox still runs and is not ME (default: this process) or a descendant of it.

    A lab whose owner is gone (left behind) is not foreign: if it appeared during a test it
    is that test's leak. A lab of ours is told apart by ancestry, which holds for every nsbox
    a test starts (directly, through sudo/setpriv, or orphaned: the test is a subreaper).
    Someone else's live lab in REGISTRY adds FOREIGN_LIVE_LAB (see there)."""
    me = os.getpid() if me is None else me
    out = {FOREIGN_LIVE_LAB} if _foreign_live_lab(me, registry) else set()
    try:
        journals = [p for p in JOURNAL_DIR.iterdir() if ONHOST_NETNS.match(p.name)]
    except OSError:
        return frozenset(out)
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
# nsbox.host.onhost's markers, and root's live-lab registry (nsbox up), which every live lab
# of root shares: it comes and goes with the first and the last of them.
_SHARED_MARKERS = ("netns-dir-created", "netns-mount-created", "labs")


def _shared(facet: str, item: object) -> bool:
    if facet in _SHARED_FACETS:
        return True
    if facet.startswith("mounts") and isinstance(item, tuple) and item and item[0] == "/run/netns":
        return True  # /run/netns bound onto itself so that its pins propagate
    return facet == "/run/nsbox entries" and item in _SHARED_MARKERS
