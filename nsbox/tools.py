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
        if os.access(path, os.X_OK) and st.st_uid == 0 and not st.st_mode & 0o022:
            return path
    return None


def need(name: str, package: str) -> str:
    """Like find(), but a missing program is an installation error naming the package."""
    from nsbox.errors import SandboxError

    path = find(name)
    if path is None:
        raise SandboxError(f"'{name}' is not installed (apt install {package})")
    return path
