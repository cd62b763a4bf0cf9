"""Processes: which ones a test left running, and waiting for things to settle.

The guard (support.host) counts every living descendant of the test process that was not
there before the test as a leak; `become_subreaper` makes sure orphans of nsbox or of a
--then command are still found as descendants instead of escaping to pid 1.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

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
def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Poll PREDICATE until it returns something truthy or TIMEOUT passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
