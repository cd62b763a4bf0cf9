"""The recipe jail: recipe code runs in a child that cannot reach the host's network.

Recipes are Python, and loading one runs it. `nsbox run` in the sandbox loads
them inside the sandbox; everything else that loads recipe code on the real
host (`--on-host`, `nsbox list`) does it here: a forked child with a network
namespace of its own, a private mount namespace with its own empty /run, and
(as root) no capabilities at all, so it can neither setns() back into the
host's namespaces nor mount, nor touch /run/netns or /run/nsbox. Its only way
out is a pipe that carries JSON: plain data the parent checks again, never
pickles or code.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from typing import Any, Callable

from nsbox.errors import NsboxError, RecipeError, SandboxError

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x4000, 1 << 18, 2, 4
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class EndedEarly(RecipeError):
    """Recipe code ended the jail before it answered (os._exit, exec, a thread, a signal)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"recipe code ended the loader without an answer (exit status {status})")
        self.status = status


def _fail(what: str) -> None:
    e = ctypes.get_errno()
    raise SandboxError(f"recipe jail: {what}: {os.strerror(e)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter() -> None:
    """Make this (forked, single-threaded) process a jail. Raises SandboxError."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        if _libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
            _fail("unshare(CLONE_NEWNET|CLONE_NEWNS)")
    else:
        # An unprivileged caller cannot change the host's network anyway; a user
        # namespace gives it a network and /run of its own all the same.
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0:
            _fail("unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _fail("mount --make-rprivate /")
    if _libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755") != 0:
        _fail("mount tmpfs on /run")
    _drop_capabilities()


def _drop_capabilities() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _fail("prctl(PR_SET_NO_NEW_PRIVS)")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        # Without the bounding set, a program run by root would get them all back.
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            _fail(f"prctl(PR_CAPBSET_DROP, {cap})")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        _fail("capset")


def run(fn: Callable[[], Any]) -> Any:
    """Run FN in a jailed child and return its JSON-able result.

    A NsboxError raised by FN is raised again here (same class family, same
    one-line message); anything else that escapes FN, including SystemExit and
    other BaseExceptions, is a RecipeError."""
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        out = os.fdopen(wfd, "w")
        code = 0
        try:
            enter()
            reply = {"ok": fn()}
        except NsboxError as e:
            reply = {"error": str(e), "exit_code": e.exit_code}
        except BaseException as e:  # noqa: BLE001 - whatever recipe code did, it is one line
            reply = {"error": f"unexpected {type(e).__name__} while loading recipes: {e}",
                     "exit_code": 2, "trace": traceback.format_exc(limit=-3)}
        try:
            out.write(json.dumps(reply))
            out.flush()
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    os.close(wfd)
    try:
        with os.fdopen(rfd) as f:
            raw = f.read()
    except BaseException:  # a signal: the jail goes with us
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):  # recipe code can write to the pipe too
        raise EndedEarly(os.waitstatus_to_exitcode(status)) from None
    if not isinstance(reply, dict):
        raise RecipeError("recipe loader answered with something that is not an object")
    if "error" in reply:
        err = RecipeError(str(reply["error"]))
        err.exit_code = int(reply.get("exit_code", 2)) if reply.get("exit_code") in (1, 2) else 2
        raise err
    return reply.get("ok")
