"""Soak, the CI count: every recipe run twice in a row in one nsbox process (bench/soak.py),
no check failing, no namespace or child process left after a round, and no growth of
file descriptors, threads or memory from one round to the next, as /proc shows them.
The full count: /opt/nsbox/venv/bin/python bench/soak.py --rounds 50."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("unshare")]

SOAK = REPO / "bench" / "soak.py"


def test_every_recipe_twice_in_one_process_leaks_nothing():
    cp = subprocess.run([sys.executable, str(SOAK), "--rounds", "3"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rounds = [ln for ln in cp.stdout.splitlines() if ln.startswith("round ")]
    assert len(rounds) == 3 and all("=fail" not in ln for ln in rounds), cp.stdout
    fds = [int(ln.split(" fds ")[1].split()[0]) for ln in rounds]
    assert fds[1] == fds[2], cp.stdout
