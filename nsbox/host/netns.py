"""Named network namespaces and entering them on the current thread.

A namespace is created with unshare(CLONE_NEWNET) on this thread and pinned by a
bind mount at /run/netns/NAME (what `ip netns add` does), then the thread goes
back. setns() only moves the calling thread, so other threads (servers) are not
disturbed; a socket opened while inside stays bound to that namespace.

On the real host /run/netns is shared with iproute2 and with other people's
namespaces, so nsbox only ever removes a pin it can prove it made: the pin file
was created with O_EXCL (a name that already exists is a collision, never
adopted) and the namespace's nsfs inode, read before the pin was mounted, must
still be what the path shows (`Pin`).
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import socket
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from nsbox.errors import KernelError
from nsbox.signals import deferred

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
NETNS_RUN_DIR = "/run/netns"
NSFS_MAGIC = 0x6E736673  # statfs f_type of a namespace file (linux/magic.h)

# --on-host names: "nsb" + 48 random bits + "-" + node. Netns names are file
# names (IFNAMSIZ does not apply), so the prefix can be long enough that two runs
# (or a user's `ip netns add`) picking the same one is not a practical matter.
PREFIX_RE = re.compile(r"nsb[0-9a-f]{12}-")
# A node name as validate.py allows it, after the prefix.
ONHOST_NAME_RE = re.compile(r"nsb[0-9a-f]{12}-[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# Testing hook: force the prefix (to provoke a collision); ignored unless it is one.
TEST_PREFIX_ENV = "NSBOX_TEST_PREFIX"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(e)}")


def new_prefix() -> str:
    forced = os.environ.get(TEST_PREFIX_ENV, "")
    if PREFIX_RE.fullmatch(forced):
        return forced
    return f"nsb{secrets.token_hex(6)}-"


def netns_path(name: str) -> str:
    return f"{NETNS_RUN_DIR}/{name}"


@dataclass(frozen=True)
class Pin:
    """Proof that /run/netns/NAME is nsbox's: the namespace's nsfs inode (what the
    path shows while mounted) and the pin file's own inode (what it shows if a
    crash came between creating the file and mounting it)."""

    path: str
    ino: int
    dev: int
    pin_ino: int
    pin_dev: int

    def as_entry(self) -> dict[str, str | int]:
        return asdict(self)


def create(name: str, record: Callable[[Pin], None] = lambda pin: None) -> str:
    """`ip netns add NAME`: a fresh namespace, pinned by a bind mount at PATH.

    RECORD is called with the proof of ownership after the pin file exists and
    before it is mounted, so a journal names it whatever happens next. A name
    that already exists raises KernelError and touches nothing."""
    path = netns_path(name)
    with scratch():
        ns = os.stat("/proc/thread-self/ns/net")
        with deferred():  # Ctrl-C between creating the file and recording it would leak it
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
            except FileExistsError:
                raise KernelError(f"netns {name} already exists ({path}); it is not this lab's: "
                                  f"left alone") from None
            except OSError as e:
                raise KernelError(f"create {path}: {e.strerror}") from None
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            pin = Pin(path, ns.st_ino, ns.st_dev, st.st_ino, st.st_dev)
            try:
                record(pin)
            except BaseException:
                remove(pin, own=True)
                raise
        try:
            _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                   f"bind mount of netns {name}")
        except BaseException:
            remove(pin, own=True)
            raise
    return path


def remove(pin: Pin, own: bool = False) -> str | None:
    """`ip netns delete`, for a pin nsbox made: unmount it while the path is an
    nsfs mount showing the recorded namespace, then unlink the file while it is
    the recorded pin file (empty, 0444, root's, on /run/netns's file system).
    Anything else at PATH is not nsbox's and is left alone: returns a note saying
    so (None when the pin is gone). Raises KernelError if removal fails.

    The (dev, inode) pair alone is no proof: a journal is only a file, and one
    naming the inode of a bind mount of something else would have clean unmount
    it. Only an nsfs mount is a namespace pin (statfs f_type NSFS_MAGIC).

    The file is unlinked only once this call has unmounted a proven pin from
    it, or when OWN says this process made it (its own journal, not one read
    from /run/nsbox): an empty file left by a crash between create and mount is
    then noted, not removed, by `nsbox clean`."""
    unmounted = unmount(pin)
    return unlink(pin, own, unmounted)


def remove_all(pins: list[Pin], own: bool = False) -> list[tuple[Pin, str | None | Exception]]:
    """remove() for every pin in PINS, in order, with one look at this mount namespace's
    mount table for them all: remove() reads /proc/self/mountinfo per pin, and with a
    thousand pins mounted that was 1.8 s of a 0.2 s teardown. Every pin is unmounted
    first, then each file unlinked under the same checks. Per pin: its note, or the
    KernelError (or OSError) that stopped it."""
    out: list[tuple[Pin, str | None | Exception]] = []
    done: list[tuple[Pin, bool | None]] = []
    for pin in pins:
        try:
            done.append((pin, unmount(pin)))
        except (KernelError, OSError) as e:
            out.append((pin, e))
    try:
        mounts: set[bytes] | None = mount_points()
    except OSError:
        mounts = None  # each pin then asks for itself (and is left alone if that fails too)
    for pin, unmounted in done:
        try:
            out.append((pin, unlink(pin, own, unmounted, mounts)))
        except (KernelError, OSError) as e:
            out.append((pin, e))
    return out


def unmount(pin: Pin) -> bool | None:
    """remove()'s first half: unmount PIN while its path is an nsfs mount showing the
    recorded namespace. True: this call unmounted it; False: nothing of it was mounted
    there; None: the path is gone."""
    unmounted = False
    for _ in range(16):  # a pin can be mounted more than once (copies by MS_REC binds)
        st = _lstat(pin.path)
        if st is None:
            return None
        if (st.st_dev, st.st_ino) != (pin.dev, pin.ino) or not is_nsfs(pin.path):
            break
        if _libc.umount2(pin.path.encode(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
            e = ctypes.get_errno()
            raise KernelError(f"umount {pin.path}: {os.strerror(e)}")
        unmounted = True
    return unmounted


def unlink(pin: Pin, own: bool, unmounted: bool | None, mounts: set[bytes] | None = None) -> str | None:
    """remove()'s second half: unlink PIN's file while it is the recorded pin file.
    MOUNTS: the mount points (mount_points()) as read after the unmount, or None to read them."""
    if unmounted is None:
        return None
    st = _lstat(pin.path)
    if st is None:
        return None
    if (own or unmounted) and _is_pin_file(pin, st, mounts):
        try:
            os.unlink(pin.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise KernelError(f"unlink {pin.path}: {e.strerror}") from None
        return None
    return (f"{pin.path} is no longer this lab's namespace (inode {st.st_ino}, recorded {pin.ino}); "
            f"left alone")


def _is_pin_file(pin: Pin, st: os.stat_result, mounts: set[bytes] | None = None) -> bool:
    """Whether ST (lstat of PIN's path, nothing mounted there) is the empty file
    create() made: the recorded inode, mode 0444 (or less), root's, on /run/netns's own file
    system, and no mount of any kind on it."""
    if (st.st_dev, st.st_ino) != (pin.pin_dev, pin.pin_ino) or not stat.S_ISREG(st.st_mode):
        return False
    if st.st_size != 0 or st.st_uid != 0 or stat.S_IMODE(st.st_mode) & ~0o444:  # the umask may take read bits
        return False
    parent = _lstat(os.path.dirname(pin.path))
    return parent is not None and parent.st_dev == st.st_dev and not _is_mount_point(pin.path, mounts)


def is_nsfs(path: str) -> bool:
    """Whether PATH itself (not a symlink's target) is on nsfs: a namespace pin."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = ctypes.create_string_buffer(256)  # struct statfs (120 bytes on 64-bit), f_type first
        if _libc.fstatfs(fd, buf) != 0:
            return False
        return ctypes.c_long.from_buffer(buf).value == NSFS_MAGIC
    finally:
        os.close(fd)


def _is_mount_point(path: str, mounts: set[bytes] | None = None) -> bool:
    """Whether PATH is a mount point in this mount namespace (/proc/self/mountinfo, or
    MOUNTS as mount_points() read it)."""
    if mounts is None:
        try:
            mounts = mount_points()
        except OSError:
            return True  # cannot tell: do not unlink
    return _mountinfo_escape(path) in mounts


def mount_points() -> set[bytes]:
    """Every mount point of this mount namespace, as /proc/self/mountinfo writes them."""
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().split(b"\n")
    return {f[4] for ln in lines if len(f := ln.split(b" ")) > 4}


def _mountinfo_escape(path: str) -> bytes:
    """PATH as mountinfo writes it (space, tab, newline, backslash as octal)."""
    out = bytearray()
    for b in os.fsencode(path):
        out += b"\\%03o" % b if b in b" \t\n\\" else bytes([b])
    return bytes(out)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def socket_in(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside the namespace at PATH. It stays bound there for
    its whole life, whatever netns the thread that uses it is in."""
    with entered(path):
        return socket.socket(family, kind, proto)


@contextmanager
def _returning_home() -> Iterator[None]:
    """Whatever the body does to this thread's netns, put it back afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        yield
    finally:
        try:
            _check(_libc.setns(home, CLONE_NEWNET), "setns back to the caller's netns")
        finally:
            os.close(home)


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body with this thread inside the namespace pinned at PATH."""
    target = os.open(path, os.O_RDONLY)
    try:
        with _returning_home():
            _check(_libc.setns(target, CLONE_NEWNET), f"setns into {path}")
            yield
    finally:
        os.close(target)


@contextmanager
def scratch() -> Iterator[None]:
    """Run the body in a fresh, unnamed namespace that the kernel frees afterwards
    (nothing pins it once this thread leaves)."""
    with _returning_home():
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        yield
