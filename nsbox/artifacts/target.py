"""Checking `--artifacts DIR` before anything is built (no kernel, no writes).

DIR is opened here, once (nsbox/safefs.py): its deepest existing directory as
an O_PATH fd, walked from / without following a symlink someone else could
have planted. Everything collect.py writes later goes through that fd: the
missing directories are made with mkdirat and opened with O_NOFOLLOW, every
file is created with O_CREAT|O_EXCL|O_NOFOLLOW, never opened by path.

Sandboxed, the outer nsbox opens DIR and hands the fd to the sandbox (env
NSBOX_ARTIFACTS_DIRFD "FD:MISSING/COMPONENTS"): the sandbox's user namespace
maps only the caller, so it could not tell root's files from another user's.
"""

from __future__ import annotations

import os
import stat

from nsbox import safefs
from nsbox.errors import UsageError

SANDBOX_PRIVATE = "/run"  # the sandbox mounts a tmpfs here: files written there vanish with it
_FD_ENV = "NSBOX_ARTIFACTS_DIRFD"


class ArtifactsTarget(str):
    """DIR made absolute (a str, for messages and reports), plus `walked`: the
    opened deepest existing directory and the components still to create."""

    walked: safefs.Walked

    def __new__(cls, path: str, walked: safefs.Walked) -> "ArtifactsTarget":
        self = super().__new__(cls, path)
        self.walked = walked
        return self


def prepare_dir(path: str, *, sandboxed: bool) -> ArtifactsTarget:
    """PATH made absolute with its directory opened, or a UsageError naming why it cannot hold artifacts.

    The directory itself is created only when a check fails, so a passing run
    leaves nothing behind; here we check that it could be: it is a directory,
    or the nearest existing ancestor is a writable directory."""
    if not path:
        raise UsageError("--artifacts needs a directory")
    full = os.path.abspath(os.path.expanduser(path))
    handed = _from_outer() if sandboxed else None
    if handed is not None:
        walked = handed
    else:
        try:
            walked = safefs.walk(full, allow_missing=True)
        except safefs.UnsafePath as e:
            raise UsageError(f"--artifacts {path}: {e}") from None
    try:
        real = os.path.join(walked.path, *walked.missing)
        if sandboxed and (real == SANDBOX_PRIVATE or real.startswith(SANDBOX_PRIVATE + "/")):
            raise UsageError(f"--artifacts {path}: {SANDBOX_PRIVATE} is private to the sandbox and vanishes with it; "
                             "choose another directory (or use --on-host)")
        kind = safefs.pseudo_fs(walked.fd, walked.path)
        if kind:
            raise UsageError(f"--artifacts {path}: {walked.path} is on {kind}, a kernel interface, "
                             "not a place for files")
        if not safefs.writable(walked.fd):
            raise UsageError(f"--artifacts {path}: {walked.path} is not writable")
    except OSError as e:
        os.close(walked.fd)
        raise UsageError(f"--artifacts {path}: {e.strerror}") from None
    except BaseException:
        os.close(walked.fd)
        raise
    if sandboxed and handed is None and not _inside_sandbox():
        os.set_inheritable(walked.fd, True)  # for the sandbox this process starts next (sandbox.fork_into)
        os.environ[_FD_ENV] = f"{walked.fd}:{'/'.join(walked.missing)}"
    return ArtifactsTarget(real if handed is None else full, walked)


def _inside_sandbox() -> bool:
    from nsbox.sandbox.enter import inside

    return inside()


def _from_outer() -> safefs.Walked | None:
    handed = os.environ.pop(_FD_ENV, None)
    if handed is None or not _inside_sandbox():
        return None
    fd_text, _, rest = handed.partition(":")
    try:
        fd = int(fd_text)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
    except (ValueError, OSError):
        return None
    missing = [c for c in rest.split("/") if c]
    if any(c in (".", "..") for c in missing):
        return None
    os.set_inheritable(fd, False)  # not for --then's processes
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        where = "?"
    return safefs.Walked(fd, where, missing)
