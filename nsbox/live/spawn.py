"""Starting a holder that outlives `nsbox up`: a session of its own, no terminal.

Sandboxed, the holder gets the namespaces `nsbox run` gives its sandbox (user,
mount, net, pid; util-linux `unshare --fork --kill-child --mount-proc`, the
command of sandbox.enter.inner_command, and the same NSBOX_SANDBOX claim), with one
difference in the user namespace: this process writes its maps itself. As root
it maps uids and gids 0-65535 to themselves and leaves setgroups allowed, so
tools that change their user in a node work as on a machine (tcpdump drops to
its `tcpdump` user, or calls setgroups with -Z root; with `unshare
--map-root-user` both fail with EPERM). An unprivileged user can map only
their own uid, with setgroups denied: the kernel's rule.
"""

from __future__ import annotations

import ctypes
import os
import sys

from nsbox import tools
from nsbox.errors import SandboxError
from nsbox.sandbox.enter import CLONE_NEWUSER, SANDBOX_ENV, inner_command

_libc = ctypes.CDLL(None, use_errno=True)
ROOT_ID_RANGE = 65536


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _detach(log_fd: int) -> None:
    """In the child: a session of its own, in /, stdin /dev/null, stdout and stderr to the log."""
    os.setsid()
    os.chdir("/")  # a daemon: it must not keep the user's working directory busy
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)


def spawn(argv: list[str], keep_fds: list[int], log_fd: int, sandboxed: bool) -> int:
    """Start `nsbox ARGV` as a holder; returns the pid of the process started
    (sandboxed: util-linux unshare, whose child is the holder)."""
    cmd = inner_command(argv)
    env = dict(os.environ)
    if sandboxed:
        cmd = [tools.need("unshare", "util-linux"), "--mount", "--net", "--pid", "--fork", "--kill-child",
               "--mount-proc", *cmd]
        env[SANDBOX_ENV] = "1"
    else:
        env.pop(SANDBOX_ENV, None)
    uid, gid = os.geteuid(), os.getegid()
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(to_parent_r)
            os.close(to_child_w)
            _detach(log_fd)
            if sandboxed:
                if _libc.unshare(CLONE_NEWUSER) != 0:
                    os.write(to_parent_w, b"E")
                    os._exit(1)
                os.write(to_parent_w, b"u")
                if os.read(to_child_r, 1) != b"m":  # the parent wrote the maps
                    os._exit(1)
            for fd in keep_fds:
                os.set_inheritable(fd, True)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    os.close(to_parent_w)
    os.close(to_child_r)
    try:
        if sandboxed:
            if os.read(to_parent_r, 1) != b"u":
                os.waitpid(pid, 0)
                raise SandboxError("the kernel refused a user namespace for the lab")
            try:
                if uid == 0:
                    _write(f"/proc/{pid}/uid_map", f"0 0 {ROOT_ID_RANGE}\n")
                    _write(f"/proc/{pid}/gid_map", f"0 0 {ROOT_ID_RANGE}\n")
                else:
                    _write(f"/proc/{pid}/setgroups", "deny")
                    _write(f"/proc/{pid}/uid_map", f"0 {uid} 1\n")
                    _write(f"/proc/{pid}/gid_map", f"0 {gid} 1\n")
            except OSError as e:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise SandboxError(f"cannot map the lab's user namespace: {e.strerror}") from None
            os.write(to_child_w, b"m")
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)
    return pid
