"""Several recipes at once inside the sandbox (`nsbox run --all`, `--jobs N`).

Most of a lab's time is the kernel waiting -- nf_tables commits for RCU grace
periods, netns creation and cleanup, probes crossing veths -- not the CPU, so two
labs side by side take little more than one. Each lab runs in a child forked from
the sandbox's nsbox, in a mount namespace of its own with its own /run: its netns
names (host, c1, ...) are its own, as they are for a lab run alone, and whatever it
built goes with it. The children's results come back as JSON down a pipe each, in
the recipes' order, whatever order they finish in.

Only in the sandbox, whose pid namespace takes every child along if nsbox dies;
--on-host, --then and --artifacts keep one recipe at a time.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
from typing import Callable, Iterator

from nsbox.model import Lab
from nsbox.verify.results import RecipeResult

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x4000, 1 << 18, 2, 4


def run_side_by_side(labs: list, run_one: Callable[[Lab], RecipeResult], jobs: int,
                     started: Callable[[str], None] | None = None) -> Iterator[RecipeResult | object]:
    """Yield RUN_ONE(lab)'s result for each of LABS, in order, with up to JOBS running at
    once in children. Items of LABS that are not Labs (a Refused) are yielded as they are.
    STARTED(name) is told when a lab's child starts. A signal here ends the children
    (each tears its lab down) before it is raised again."""
    pending = list(enumerate(labs))
    running: dict[int, tuple[int, int]] = {}  # index -> (pid, read fd)
    received: dict[int, list[bytes]] = {}
    done: dict[int, RecipeResult | object] = {}
    nxt = 0
    try:
        while nxt < len(labs):
            while pending and len(running) < jobs:
                i, lab = pending.pop(0)
                if not isinstance(lab, Lab):
                    done[i] = lab
                    continue
                if started is not None:
                    started(lab.name)
                running[i] = _fork(lab, run_one)
                received[i] = []
            if nxt in done:
                yield done.pop(nxt)
                nxt += 1
                continue
            by_fd = {fd: i for i, (_, fd) in running.items()}
            for fd in select.select(list(by_fd), [], [])[0]:
                i = by_fd[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    received[i].append(chunk)
                    continue
                pid, _ = running.pop(i)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                done[i] = _result(labs[i].name, b"".join(received.pop(i)), status)
    except BaseException:
        for pid, _ in running.values():
            try:
                os.kill(pid, signal.SIGTERM)  # it tears its lab down, as a run alone does
            except ProcessLookupError:
                pass
        for pid, fd in running.values():
            os.waitpid(pid, 0)
            os.close(fd)
        raise


def _result(name: str, data: bytes, status: int) -> RecipeResult:
    from nsbox.sandbox.result_pipe import results_from_message

    try:
        results = results_from_message({"results": [json.loads(data)]}) if data else None
    except (ValueError, RecursionError):
        results = None
    if results:
        return results[0]
    code = os.waitstatus_to_exitcode(status)
    return RecipeResult(name, "fail", error=f"the recipe's process ended without a result (exit {code})")


def _fork(lab: Lab, run_one: Callable[[Lab], RecipeResult]) -> tuple[int, int]:
    import sys

    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid != 0:
        os.close(w)
        return pid, r
    status = 1  # pragma: no cover - the child
    try:
        os.close(r)
        from nsbox.signals import end_cleanly_on_signals

        end_cleanly_on_signals()  # a signal now tears this lab down, in this process
        _own_run()
        result = run_one(lab)
        data = memoryview(json.dumps(result.to_json()).encode())
        while data:
            data = data[os.write(w, data):]
        status = 0
    except BaseException:  # noqa: BLE001 - the parent reports a child without a result
        status = 1
    finally:
        os._exit(status)


def _own_run() -> None:
    """A mount namespace and an empty /run of this child's own: its /run/netns pins are
    its lab's alone, and go with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755") != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs on /run")
