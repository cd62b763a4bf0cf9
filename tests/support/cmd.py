"""Running a host command for an observation (never for an effect the test asserts on)."""

from __future__ import annotations

import subprocess


def cmd(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def lines(cp: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in cp.stdout.splitlines() if ln.strip()]
