"""A copy of this checkout's nsbox/ and recipes/ that every user can read.

The tests that run nsbox as uid 65534 (nobody) cannot run it from the checkout, which nobody
may not be able to enter (it often lives under /root, mode 700): they run this copy, which
is world-readable and writable by root only. Used by tests/kernel/test_kernel_live.py and
tests/kernel/test_kernel_unprivileged.py.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support.paths import REPO


@contextmanager
def world_readable_copy(prefix: str) -> Iterator[Path]:
    """nsbox/ and recipes/ copied into a fresh folder under /tmp named PREFIX..., every file
    mode 644 and every folder 755; removed again when the block ends, whatever happened."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "nsbox", d / "nsbox", ignore=ignore)
        shutil.copytree(REPO / "recipes", d / "recipes", ignore=ignore)
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
