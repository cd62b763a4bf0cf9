"""The system programs nsbox runs, found only in the system's own directories.

PATH is the caller's: a root tool must not run an `unshare` or `nsenter` that a
user dropped into a directory early on it."""

from __future__ import annotations

import os

TRUSTED_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find(name: str) -> str | None:
    """Absolute path of program NAME in a root-owned system directory, or None."""
    for d in TRUSTED_DIRS:
        path = os.path.join(d, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.access(path, os.X_OK) and st.st_uid in _root_uids() and not st.st_mode & 0o022:
            return path
    return None


def _root_uids() -> tuple[int, ...]:
    """How the real root's files look here: uid 0, or, in a user namespace that does
    not map the real root (the unprivileged sandbox), the kernel's overflow uid."""
    try:
        with open("/proc/self/uid_map") as f:
            maps_root = any(int(o) <= 0 < int(o) + int(n) for _, o, n in (ln.split() for ln in f if ln.strip()))
        if maps_root:
            return (0,)
        with open("/proc/sys/kernel/overflowuid") as f:
            return (0, int(f.read()))
    except (OSError, ValueError):
        return (0,)


def need(name: str, package: str) -> str:
    """Like find(), but a missing program is an installation error naming the package."""
    from nsbox.errors import InstallError

    path = find(name)
    if path is None:
        raise InstallError(f"'{name}' is not installed (apt install {package})")
    return path
