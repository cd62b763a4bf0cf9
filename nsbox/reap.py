"""Run `--then` to its end, and when a signal cuts it short, leave none of it behind.

`--then CMD` runs as `nsenter ... setpriv --pdeathsig KILL unshare --pid --fork
--kill-child sh -c CMD`: CMD and everything it starts live in a pid namespace of
their own whose init (sh) the kernel kills when unshare dies. That kill is
asynchronous: nsbox used to kill unshare, wait for it alone and exit while the
namespace's processes were still dying (once 0.7 s after exit 130). Here nsbox
waits until the namespace's init is gone too; an init ends only after every
other process of its namespace has, so then nothing of CMD is left.

In the sandbox CMD runs without a pid namespace of its own (so `ps` and `ss -p` see
the lab's processes): nsbox is the sandbox's pid 1, and its end takes everything with
it. There CMD's own descendants are killed here, so nothing waits for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import IO

from nsbox import retry

REAP_LIMIT = 5.0  # seconds to wait for the namespace to empty after SIGKILL


def run_to_end(argv: list[str], env: dict[str, str], stdout: IO | None) -> int:
    """Run ARGV; its exit status (negative: killed by that signal). If this process
    is interrupted (a signal raises), kill ARGV's process and wait for its pid
    namespace to be empty before the exception goes on."""
    p = subprocess.Popen(argv, env=env, stdout=stdout)
    try:
        return p.wait()
    except BaseException:
        _kill_and_reap(p)
        raise


def _kill_and_reap(p: subprocess.Popen) -> None:
    try:
        os.kill(p.pid, signal.SIGSTOP)  # a stopped process forks nothing we would not see
    except ProcessLookupError:
        pass
    below = _descendants(p.pid)  # on the host: unshare's init; in the sandbox: CMD's own children
    inits = [(pid, _start_time(pid)) for pid in below]
    for pid, start in inits:
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    p.kill()
    try:
        p.wait(timeout=REAP_LIMIT)
    except subprocess.TimeoutExpired:
        pass
    retry.until(lambda: any(_alive(pid, start) for pid, start in inits), lambda alive: not alive,
                within=REAP_LIMIT, every=0.005)


def _descendants(pid: int) -> list[int]:
    """PID's children, their children, ...: processes our own command started."""
    out: list[int] = []
    todo = _children(pid)
    while todo and len(out) < 4096:
        child = todo.pop()
        out.append(child)
        todo += _children(child)
    return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return []


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _alive(pid: int, start: str | None) -> bool:
    """Whether PID is still the process it was (same start time) and not yet a zombie:
    a zombie init has outlived every process of its namespace."""
    fields = _stat_fields(pid)
    return fields is not None and fields[19] == start and fields[0] not in ("Z", "X")
