"""Named network namespaces and entering them on the current thread.

A namespace is created with unshare(CLONE_NEWNET) on this thread and pinned by a
bind mount at /run/netns/NAME (what `ip netns add` does), then the thread goes
back. setns() only moves the calling thread, so other threads (servers) are not
disturbed; a socket opened while inside stays bound to that namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from contextlib import contextmanager
from typing import Iterator

from nsbox.errors import KernelError

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(e)}")


def netns_path(name: str) -> str:
    return f"{NETNS_RUN_DIR}/{name}"


def create(name: str) -> str:
    """`ip netns add NAME`: a fresh namespace, pinned by a bind mount at PATH."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    path = netns_path(name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        raise KernelError(f"netns {name} already exists ({path})") from None
    try:
        with scratch():
            _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                   f"bind mount of netns {name}")
    except KernelError:
        _unlink(path)
        raise
    return path


def delete(path: str) -> None:
    """`ip netns delete`: drop the pin; the kernel frees the namespace once unused."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            raise KernelError(f"umount {path}: {os.strerror(e)}")
    _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
