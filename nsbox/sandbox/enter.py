"""Entering the sandbox, supervising it, and explaining in one line when the kernel refuses."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from nsbox import tools
from nsbox.errors import SandboxError
from nsbox.signals import ENDING, end_cleanly_on_signals

# Set by the supervisor for the process it starts; a claim, not a proof: see inside().
SANDBOX_ENV = "NSBOX_SANDBOX"
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_REC, MS_PRIVATE, MS_NOEXEC = 0x4000, 1 << 18, 8
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV = 2, 4
SI_USER = 0  # siginfo si_code of a signal sent with kill()
TEARDOWN_GRACE = 15.0  # seconds the sandbox's nsbox has to end after taking a signal
_INIT_USERNS_MAP = ["0", "0", "4294967295"]

_libc = ctypes.CDLL(None, use_errno=True)
_claimed = False


def claim_from_environment() -> None:
    """Take the supervisor's marker out of the environment, first thing.

    It must not reach anything this process starts (`--then`, a nested nsbox)."""
    global _claimed
    _claimed = os.environ.pop(SANDBOX_ENV, None) == "1"
    from nsbox.sandbox import result_pipe

    result_pipe.claim_from_environment(_claimed)


def inside() -> bool:
    """Whether this process is the sandbox's pid 1.

    The environment variable only says the supervisor meant it; the namespaces
    decide. A caller who sets NSBOX_SANDBOX=1 by hand is not pid 1 of a pid
    namespace in a user namespace of its own, so nsbox makes a sandbox as usual
    instead of mounting over the caller's /run."""
    return _claimed and os.getpid() == 1 and not _in_initial_user_namespace()


def _in_initial_user_namespace() -> bool:
    try:
        return Path("/proc/self/uid_map").read_text().split() == _INIT_USERNS_MAP
    except OSError:
        return True


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def preflight() -> None:
    """Raise SandboxError with the reason if a sandbox cannot be made here."""
    for prog in ("unshare", "setpriv"):
        if tools.find(prog) is None:
            raise SandboxError(f"util-linux '{prog}' is not installed (apt install util-linux), "
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


def inner_command(argv: list[str]) -> list[str]:
    """`python -I -c ...`: the sandboxed nsbox imports only nsbox itself (from the
    directory this one was loaded from) and the interpreter's own site-packages.
    Isolated mode ignores PYTHON* variables and does not put the working
    directory on sys.path, so no file there can run as root."""
    package_parent = str(Path(__file__).resolve().parents[2])
    code = f"import sys; sys.path.insert(0, {package_parent!r}); from nsbox.entry import main; main()"
    return [sys.executable, "-I", "-c", code, *argv]


def fork_into(report: Callable[[int, dict | None], int],
              on_result: Callable | None = None, warm: Callable[[], None] | None = None) -> None:
    """Go on with this very run in a new sandbox: return only there, as its pid 1.

    What nsbox once did by re-executing itself under `setpriv --pdeathsig KILL unshare --user --map-root-user
    --mount --net --pid --fork --kill-child --mount-proc python -I ...`, done by
    forking this process instead: the sandbox's nsbox is this one, already started,
    imported and past its command line, so a run pays for one interpreter, not two
    (a second start-up and import was ~60 ms of the ~0.5 s `nsbox run bridge-mode`).

    Three processes, as with unshare: this one stays outside as the supervisor
    (_supervise, the report); a middle one makes the user, mount, net and pid
    namespaces, maps root to the caller's uid and waits, as `unshare --fork` does;
    its child is pid 1 there and returns from here. What exec would have closed
    (every close-on-exec fd) is closed in the child, so it holds nothing of this
    process's but stdio, the result pipe and what was made inheritable for it
    (an --output or --artifacts directory's fd). REPORT(status, message) writes the report here, where recipe code cannot end the
    process, and gives the exit code; ON_RESULT(RecipeResult) gets each recipe's result as it comes.
    WARM runs here while the sandbox works, on the other CPU: the report's imports
    (rich alone is ~30 ms) then cost nothing after the sandbox has ended."""
    from nsbox.sandbox.result_pipe import Receiver

    receiver = Receiver(on_result)
    sys.stdout.flush()
    sys.stderr.flush()
    waited = {s for s in ENDING if signal.getsignal(s) != signal.SIG_IGN} | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        _middle(supervisor, receiver.write_fd)  # returns in the sandbox's pid 1 only
        global _claimed
        _claimed = True
        from nsbox.sandbox import result_pipe
        from nsbox.signals import end_cleanly_on_signals as handlers

        result_pipe.take(receiver.write_fd)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        handlers()  # the handlers now raise in this process (they still name the supervisor)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # a signal that came meanwhile: now
        return
    signal.signal(signal.SIGINT, old_int)
    receiver.start()
    if warm is not None:
        try:
            warm()  # the ending signals stay blocked until _supervise waits for them
        except Exception:  # noqa: BLE001 - only a head start: the report imports what it needs itself
            pass
    rc = _supervise(pid, waited)
    sys.exit(report(rc, receiver.message()))


def _middle(supervisor: int, keep_fd: int) -> None:
    """In the supervisor's child: make the namespaces, fork their pid 1 and return
    in it; this process waits for it and exits with its status (never returns)."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # setpriv --pdeathsig KILL
        if os.getppid() != supervisor:  # it died before the line above took effect
            os._exit(128 + signal.SIGKILL)
        uid, gid = os.geteuid(), os.getegid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0:
            _die(f"the kernel refused the sandbox's namespaces ({os.strerror(ctypes.get_errno())}); "
                 "run as root, or use --on-host as root")
        _write("/proc/self/setgroups", "deny")  # --map-root-user
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:  # unshare's --propagation private
            _die(f"cannot make the sandbox's mounts private: {os.strerror(ctypes.get_errno())}")
        child = os.fork()
    except BaseException as e:  # noqa: BLE001 - this process must not return into nsbox
        _die(f"cannot make the sandbox: {e}")
    if child != 0:  # unshare --fork: wait, pass the status on; signals stay blocked here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.closerange(3, _fd_limit())  # the result pipe's EOF is the sandbox's end alone
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except BaseException:  # noqa: BLE001
                os._exit(1)
        code = os.waitstatus_to_exitcode(status)
        os._exit(128 - code if code < 0 else code)
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # --kill-child: the sandbox dies with the middle
        # --mount-proc: this pid namespace's own /proc
        if (_libc.mount(b"none", b"/proc", None, MS_REC | MS_PRIVATE, None) != 0
                or _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0):
            _die(f"cannot mount the sandbox's /proc: {os.strerror(ctypes.get_errno())}")
        _close_on_exec_fds(keep_fd)
    except BaseException as e:  # noqa: BLE001
        _die(f"cannot make the sandbox: {e}")


def _die(message: str) -> None:
    os.write(2, f"nsbox: error: {message}\n".encode())
    os._exit(2)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _fd_limit() -> int:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < (1 << 20) else 1 << 20


def _close_on_exec_fds(keep: int) -> None:
    """Close what an exec would have closed: every fd marked close-on-exec, but KEEP."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        try:
            if not os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass  # listdir's own fd, gone already


def _supervise(pid: int, waited: set[int]) -> int:
    """Wait for the sandbox; pass on what ends it; return nsbox's exit status."""
    in_charge = 0.0  # when the sandbox's nsbox took a signal and began tearing down
    taken = 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            return 128 - rc if rc < 0 else rc
        if in_charge and time.monotonic() - in_charge > TEARDOWN_GRACE:
            # It took the signal but did not end: whatever swallowed it, the
            # kernel removes a killed sandbox completely.
            _kill(pid)
            return 128 + taken
        info = signal.sigtimedwait(waited, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        inner = _first_child(pid)
        if in_charge:
            continue
        if inner is not None and _catches(inner, info.si_signo):
            in_charge, taken = time.monotonic(), info.si_signo
            # A terminal's Ctrl-C (SI_KERNEL) reached the sandbox's pid 1 already,
            # being in this process group; pass on only what kill() sent to us.
            if not (info.si_signo == signal.SIGINT and info.si_code != SI_USER):
                try:
                    os.kill(inner, info.si_signo)
                except ProcessLookupError:
                    pass
            continue
        # The sandbox's nsbox has no handler yet (it is starting up, or not even
        # exec'd): the kernel would drop the signal at a pid namespace's init.
        # Nothing can have been built that the kernel does not remove by itself
        # when the sandbox dies, so end it now.
        _kill(pid)
        return 128 + info.si_signo


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)  # unshare; --kill-child takes the sandbox with it
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _catches(pid: int, signum: int) -> bool:
    """Whether PID has a handler for SIGNUM (SigCgt in /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def _first_child(pid: int) -> int | None:
    """The sandbox's pid 1, seen from here: the child of unshare."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        return int(children[0]) if children else None
    except OSError:
        return None


def setup_inside() -> None:
    """First thing inside the sandbox: a private /run, and signals that end the run cleanly."""
    if _libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755") != 0:
        e = ctypes.get_errno()
        raise SandboxError(f"cannot mount a private /run in the sandbox: {os.strerror(e)}")
    end_cleanly_on_signals()
