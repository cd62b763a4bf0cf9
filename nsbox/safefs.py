"""Writing where a user points root (`--output FILE`, `--artifacts DIR`) through
directory file descriptors: a path is resolved once, and never again.

The threat: root runs nsbox with a path into a directory another user can
change (their home, a project checkout, sticky world-writable /tmp). Whoever
can rename entries there could swap a component for a symlink between a check
and a write, and make root create, chmod or truncate a file anywhere.

What this module does instead:

- walk(): the path is opened component by component from `/` with
  openat(O_PATH|O_NOFOLLOW). A symlink on the way (or at FILE) is followed only
  when root or the caller owns it AND it sits in a directory no one else can
  rename entries in (owned by root or the caller; not group/world-writable, or
  sticky); otherwise the path is refused. That stops both a planted symlink in
  /tmp and one made by the owner of a directory on the way.
- Every later operation is relative to the directory fd the walk ended on:
  mkdirat, openat(O_CREAT|O_EXCL|O_NOFOLLOW) for every new file (never an open
  of an existing file for writing), fchmod on the fd, and renameat within that
  directory. rename(2) replaces a directory entry and never follows a symlink.

Decision: a directory owned by another (non-root) user is NOT refused.
`sudo nsbox run … --output ~/report.xml` is the ordinary use, and it is safe by
construction: everything root creates is new (O_EXCL) and stays inside the
directory that fd names; that directory's owner can move or replace what root
wrote, which they could do to their own files anyway, but cannot make root
touch anything outside it. Kernel interfaces are refused (/proc, /sys,
cgroupfs…: a "file" there is a knob), and so is an existing FILE that is not a
regular file (/dev/null, a FIFO, a socket, a directory).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
import struct
from dataclasses import dataclass, field

MAX_SYMLINKS = 40  # as the kernel (ELOOP)

# statfs f_type of file systems whose files are kernel knobs, not files.
_PSEUDO_FS = {
    0x9FA0: "proc", 0x62656572: "sysfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2",
    0x64626720: "debugfs", 0x74726163: "tracefs", 0x73636673: "securityfs", 0xCAFE4A11: "bpf",
    0x62656570: "configfs", 0xDE5E81E4: "efivarfs", 0x6165676C: "pstore", 0x1CD1: "devpts",
    0x65735543: "fusectl", 0x42494E4D: "binfmt_misc",
}
_PSEUDO_PREFIXES = ("/proc", "/sys")

_libc = ctypes.CDLL(None, use_errno=True)


class UnsafePath(Exception):
    """The path cannot be used safely; the text says why (one line)."""


@dataclass
class Walked:
    """Where a walk ended: an O_PATH fd of the deepest existing directory, its
    canonical path (for messages), and the components below it that do not exist."""

    fd: int
    path: str
    missing: list[str] = field(default_factory=list)


def trusted_uids() -> tuple[int, ...]:
    return (0, os.geteuid())


def dir_is_private(st: os.stat_result) -> bool:
    """Only root or the caller can rename entries in this directory (sticky: only their own)."""
    mode = st.st_mode
    return st.st_uid in trusted_uids() and (not mode & 0o022 or bool(mode & stat.S_ISVTX))


def _open_dir(name: str, dir_fd: int) -> int:
    return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def walk(path: str, *, allow_missing: bool = False) -> Walked:
    """Open the directory PATH names, component by component (see the module's doc).

    With ALLOW_MISSING, stop at the first component that does not exist and
    return the rest in `missing` (they are created later with make_dirs)."""
    if not path.startswith("/"):
        raise ValueError(f"walk() needs an absolute path, not {path!r}")
    stack: list[tuple[int, str]] = [(os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), "/")]
    todo = _components(path)
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            fd, here = stack[-1]
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            there = os.path.join(here, comp)
            try:
                st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
            except PermissionError as e:
                raise UnsafePath(f"{there}: {e.strerror}") from None
            except FileNotFoundError:
                rest = [comp, *todo]
                if not allow_missing:
                    raise UnsafePath(f"{there} does not exist") from None
                if ".." in rest:
                    raise UnsafePath(f"{there} does not exist (and '..' follows it)") from None
                return _done(stack, rest)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise UnsafePath(f"{there}: too many levels of symbolic links")
                check_symlink(st, fd, there)
                try:
                    target = os.readlink(comp, dir_fd=fd)
                except OSError as e:
                    raise UnsafePath(f"{there}: {e.strerror}") from None
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo[:0] = _components(target)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"{there} is not a directory")
            try:
                stack.append((_open_dir(comp, fd), there))
            except OSError as e:  # swapped for a symlink or a file since the stat
                raise UnsafePath(f"{there} changed while it was being opened ({e.strerror})") from None
            # Never through /proc or /sys: their symlinks (/proc/self/fd/1…) lead anywhere.
            kind = pseudo_fs(stack[-1][0], there)
            if kind:
                raise UnsafePath(f"{there} is on {kind}, a kernel interface, not a place for files")
        return _done(stack, [])
    except BaseException:
        for fd, _ in stack:
            os.close(fd)
        raise


def _done(stack: list[tuple[int, str]], missing: list[str]) -> Walked:
    fd, here = stack.pop()
    for other, _ in stack:
        os.close(other)
    return Walked(fd, here, missing)


def check_symlink(st: os.stat_result, parent_fd: int, there: str) -> None:
    """Raise UnsafePath unless the symlink (lstat ST, in PARENT_FD) may be followed."""
    if st.st_uid not in trusted_uids():
        raise UnsafePath(f"{there} is a symlink owned by uid {st.st_uid}: nsbox follows only root's "
                         "or its caller's symlinks; give the real path")
    if not dir_is_private(os.fstat(parent_fd)):
        raise UnsafePath(f"{there} is a symlink in a directory others can change: give the real path")


def make_dirs(walked: Walked) -> tuple[int, str]:
    """Create WALKED's missing directories (mkdirat), each opened with O_NOFOLLOW
    right after; returns (O_PATH fd, path) of the last one. The caller closes the fd."""
    fd, here = os.dup(walked.fd), walked.path
    try:
        for comp in walked.missing:
            try:
                os.mkdir(comp, 0o777, dir_fd=fd)
            except FileExistsError:
                pass  # made meanwhile: used only if it is a real directory (O_NOFOLLOW below)
            new = _open_dir(comp, fd)
            os.close(fd)
            fd, here = new, os.path.join(here, comp)
        return fd, here
    except BaseException:
        os.close(fd)
        raise


def pseudo_fs(fd: int, path: str) -> str | None:
    """The name of the kernel-interface file system FD (or PATH) is on, else None."""
    if any(path == p or path.startswith(p + "/") for p in _PSEUDO_PREFIXES):
        return path.split("/")[1]
    buf = ctypes.create_string_buffer(256)
    if _libc.fstatfs(fd, buf) != 0:
        return None
    return _PSEUDO_FS.get(struct.unpack_from("l", buf.raw)[0] & 0xFFFFFFFF)


def writable(fd: int) -> bool:
    return os.access(".", os.W_OK | os.X_OK, dir_fd=fd)


def create(dir_fd: int, name: str, mode: int = 0o666, *, readable: bool = False) -> int:
    """A new file NAME in DIR_FD, opened for writing: never an existing file, never through a symlink."""
    return os.open(name, (os.O_RDWR if readable else os.O_WRONLY) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                   dir_fd=dir_fd)


def non_regular(dir_fd: int, name: str) -> str | None:
    """What NAME in DIR_FD is, when it exists and is not a regular file (nor a symlink)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    for test, what in kinds:
        if test(st.st_mode):
            return what
    return None


def replace(dir_fd: int, name: str, data: bytes) -> None:
    """Write DATA as NAME in DIR_FD atomically: a new temp file (O_EXCL, 0600 while
    it is written), fsync, fchmod to what the umask allows, renameat over NAME."""
    if non_regular(dir_fd, name):
        raise OSError(errno.EEXIST, f"it exists and is {non_regular(dir_fd, name)}")
    umask = os.umask(0)
    os.umask(umask)
    for _ in range(100):
        tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
        try:
            fd = create(dir_fd, tmp, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no free temporary name")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            # A report is for the CI job and its readers, like any file the user creates;
            # set on the fd, so it is this file's mode that changes, whatever the name now is.
            os.fchmod(f.fileno(), 0o666 & ~umask)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
