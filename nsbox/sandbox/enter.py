"""Entering the sandbox, and explaining in one line when the kernel refuses."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from nsbox.errors import SandboxError

SANDBOX_ENV = "NSBOX_SANDBOX"
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV = 2, 4
SI_USER = 0  # siginfo si_code of a signal sent with kill()

_libc = ctypes.CDLL(None, use_errno=True)


def inside() -> bool:
    return os.environ.get(SANDBOX_ENV) == "1"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def preflight() -> None:
    """Raise SandboxError with the reason if a sandbox cannot be made here."""
    if shutil.which("unshare") is None:
        raise SandboxError("util-linux 'unshare' is not installed (apt install util-linux), "
                           "or use --on-host as root")
    root = os.geteuid() == 0
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        raise SandboxError("user namespaces are disabled (user.max_user_namespaces=0); "
                           "enable them or use --on-host as root")
    if not root and _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        raise SandboxError("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0); "
                           "run as root or: sudo sysctl kernel.unprivileged_userns_clone=1")
    if not root and _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        raise SandboxError("AppArmor restricts unprivileged user namespaces here "
                           "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10+); run nsbox with "
                           "sudo, or allow them: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0")
    # The real test: try it in a throwaway child.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        rc = _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
        os._exit(0 if rc == 0 else (ctypes.get_errno() or 1))
    _, status = os.waitpid(pid, 0)
    err = os.waitstatus_to_exitcode(status)
    if err != 0:
        raise SandboxError(f"the kernel refused a user namespace ({os.strerror(err) if err > 0 else err}); "
                           "run as root, or use --on-host as root")


def reexec(argv: list[str]) -> NoReturn:
    """Run `python -m nsbox ARGV` in a new sandbox, supervise it, exit with its status.

    util-linux `unshare --fork` blocks SIGTERM in its own process and waits, so a
    plain exec would make `kill PID` a no-op. This process stays as a thin
    supervisor: it forwards SIGTERM/SIGHUP to the sandbox's pid 1 (which tears
    down and exits 128+signum), and `setpriv --pdeathsig` ties unshare to it, so a
    SIGKILL here still takes the whole sandbox down (unshare --kill-child)."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env[SANDBOX_ENV] = "1"
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = ["setpriv", "--pdeathsig", "KILL",
           "unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
           "--kill-child", "--mount-proc", sys.executable, "-m", "nsbox", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    proc = subprocess.Popen(cmd, env=env)
    # Blocked only now: the child must not inherit a blocked mask.
    waited = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    while proc.poll() is None:
        info = signal.sigtimedwait(waited, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        # A terminal's Ctrl-C (SI_KERNEL) reaches the sandbox's pid 1 directly,
        # being in this process group; forward only what kill() sent to us.
        if info.si_signo == signal.SIGINT and info.si_code != SI_USER:
            continue
        target = _first_child(proc.pid) or proc.pid
        try:
            os.kill(target, info.si_signo)
        except ProcessLookupError:
            pass
    rc = proc.returncode
    sys.exit(128 - rc if rc < 0 else rc)


def _first_child(pid: int) -> int | None:
    """The sandbox's pid 1, seen from here: the child of unshare."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        return int(children[0]) if children else None
    except OSError:
        return None


class Terminated(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: unwinds (and tears down); exit 128+signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_owner_pid: int | None = None


def _on_signal(signum: int, _frame) -> None:
    if os.getpid() != _owner_pid:
        # A forked child (a library helper) inherited this handler: it must not
        # unwind a copy of nsbox and tear the lab down under the real one.
        os._exit(128 + signum)
    # The first signal starts an orderly teardown; repeats (a group kill plus
    # the supervisor's forward, an impatient second Ctrl-C) must not cut it short.
    for sig in _ENDING:
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def end_cleanly_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind so the lab is torn down, in this process only.

    Needed in both modes: on the host SIGTERM's default would skip teardown, and
    as pid 1 of the sandbox's pid namespace the kernel gives it no default at all."""
    global _owner_pid
    _owner_pid = os.getpid()
    for sig in _ENDING:
        signal.signal(sig, _on_signal)


def setup_inside() -> None:
    """First thing inside the sandbox: a private /run, and signals that end the run cleanly."""
    if _libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755") != 0:
        e = ctypes.get_errno()
        raise SandboxError(f"cannot mount a private /run in the sandbox: {os.strerror(e)}")
    end_cleanly_on_signals()
