"""The Vagrant lab's provisioning script, run as is on this machine (as root, as
Vagrant's shell provisioner runs it): the README's install command, `nsbox doctor`
and every recipe. The VM itself needs a hypervisor; the script does not.

It installs into a virtualenv of its own (NSBOX_VENV, no /usr/local/bin link), so
the machine's /opt/nsbox/venv is left as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import REPO


pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]


def test_provision_script_installs_and_runs_every_recipe(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    link = tmp_path / "bin" / "nsbox"  # stands in for /usr/local/bin/nsbox
    link.parent.mkdir()
    env = {**os.environ, "NSBOX_SRC": str(REPO), "NSBOX_VENV": str(venv), "NSBOX_BIN_LINK": str(link),
           "NSBOX_BIN": str(link)}
    cp = subprocess.run(["sh", str(REPO / "vagrant" / "provision.sh")], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=900, start_new_session=True)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out[-4000:]
    assert "nsbox installed:" in out
    assert "nsbox is usable here" in out  # doctor's verdict
    assert "nsbox lab ready" in out
    # run --all's closing line: every recipe ran, none failed.
    summary = [ln for ln in cp.stdout.splitlines() if ln.endswith("skipped") and " passed, " in ln]
    assert summary and " 0 failed" in summary[-1], out[-4000:]
    # What the install left runs from anywhere, without the checkout on its path.
    listed = subprocess.run([str(link), "list"], capture_output=True, text=True, cwd="/", timeout=60)
    assert listed.returncode == 0 and "bridge-mode" in listed.stdout, listed.stderr
    _ctrl_c_at_start_ends_as_ctrl_c(link)


def _ctrl_c_at_start_ends_as_ctrl_c(launcher: Path) -> None:
    """The installed launcher starts Python with the ending signals blocked: a Ctrl-C
    5-65 ms after start (inside Python's own start-up for most of these moments, where a
    plain start dies with "Fatal Python error") ends as Ctrl-C does, 130 (or the command
    finished first: 0)."""
    seen: dict[str, int] = {}
    for i in range(20):
        p = subprocess.Popen([str(launcher), "list"], cwd="/", stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.005 + i * 0.003)
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
        key = f"exit {p.returncode}" + (" Fatal Python error" if "Fatal Python error" in err else "")
        seen[key] = seen.get(key, 0) + 1
    assert set(seen) <= {"exit 130", "exit 0"} and seen.get("exit 130"), seen
