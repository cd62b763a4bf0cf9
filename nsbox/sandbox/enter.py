"""Entering the sandbox, and explaining in one line when the kernel refuses."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

from nsbox.errors import SandboxError

SANDBOX_ENV = "NSBOX_SANDBOX"
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV = 2, 4

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
    """Replace this process with `unshare ... python -m nsbox ARGV` inside a new sandbox."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env[SANDBOX_ENV] = "1"
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
           "--kill-child", "--mount-proc", sys.executable, "-m", "nsbox", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", cmd, env)


def _terminate(signum: int, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def setup_inside() -> None:
    """First thing inside the sandbox: a private /run, and signals that end the run cleanly."""
    if _libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755") != 0:
        e = ctypes.get_errno()
        raise SandboxError(f"cannot mount a private /run in the sandbox: {os.strerror(e)}")
    # As pid 1 we get no default action for SIGTERM/SIGHUP: ask for one.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
