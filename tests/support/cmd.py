"""Running a host command for an observation (never for an effect the test asserts on)."""

from __future__ import annotations

import subprocess


def cmd(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def lines(cp: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in cp.stdout.splitlines() if ln.strip()]


def describe(cp: subprocess.CompletedProcess) -> str:
    """A finished command for a failure message: its argv, exit status and output's tails."""
    args = cp.args if isinstance(cp.args, str) else " ".join(map(str, cp.args))
    return f"$ {args}\nexit {cp.returncode}\n--- stdout\n{cp.stdout[-3000:]}\n--- stderr\n{cp.stderr[-3000:]}"
