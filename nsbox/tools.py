"""The system programs nsbox runs, found only in the system's own directories.

PATH is the caller's: a root tool must not run an `unshare` or `nsenter` that a
user dropped into a directory early on it."""

from __future__ import annotations

import os

TRUSTED_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


SAFE_PATH = ":".join(TRUSTED_DIRS)


def sanitize_path() -> None:
    """As root, PATH becomes the system directories for everything nsbox spawns (iptables-
    restore's helpers, --then's command): a directory of the caller's PATH that a user can
    write (sudo -E, a CI runner's tool cache) must not lend them a program run as uid 0.
    An unprivileged caller's PATH is theirs to keep: they gain nothing from it."""
    if really_root():
        os.environ["PATH"] = SAFE_PATH


def really_root() -> bool:
    """uid 0 that is the real root (not the caller mapped to 0 in the unprivileged sandbox)."""
    return os.geteuid() == 0 and _root_uids() == (0,)


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
