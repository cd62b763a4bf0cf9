"""Checking `--artifacts DIR` before anything is built (no kernel, no writes)."""

from __future__ import annotations

import os

from nsbox.errors import UsageError

SANDBOX_PRIVATE = "/run"  # the sandbox mounts a tmpfs here: files written there vanish with it


def prepare_dir(path: str, *, sandboxed: bool) -> str:
    """PATH made absolute, or a UsageError naming why it cannot hold artifacts.

    The directory itself is created only when a check fails, so a passing run
    leaves nothing behind; here we check that it could be: it is a directory,
    or the nearest existing ancestor is a writable directory."""
    if not path:
        raise UsageError("--artifacts needs a directory")
    full = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    if sandboxed and (full == SANDBOX_PRIVATE or full.startswith(SANDBOX_PRIVATE + "/")):
        raise UsageError(f"--artifacts {path}: {SANDBOX_PRIVATE} is private to the sandbox and vanishes with it; "
                         "choose another directory (or use --on-host)")
    probe = full
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UsageError(f"--artifacts {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--artifacts {path}: {probe} is not writable")
    return full
