"""`run --then-in NODE --then CMD`: CMD runs in NODE as in a live lab's node (issue 18):
its own hostname (UTS namespace), /etc/hosts and /etc/hostname of its own (mount
namespace), its netns; the machine's hostname and files stay as they were."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from tests.support import paths

pytestmark = [pytest.mark.kernel, pytest.mark.tools("unshare", "nsenter", "setpriv")]

REPO = paths.REPO
CMD = "echo hostname=$(hostname); echo file=$(cat /etc/hostname); getent hosts c1; ip -br addr show eth0; pwd"


def _run(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([os.environ.get("NSBOX_TEST_PYTHON", "/opt/nsbox/venv/bin/python"), "-m", "nsbox", "run",
                           "bridge-mode", "--quiet", *args, "--then-in", "c1", "--then", CMD],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["sandbox", pytest.param("on-host", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="--on-host needs root"))])
def test_then_runs_in_the_node_with_its_own_hostname(tmp_path, mode):
    before = (socket.gethostname(), Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else "")
    cp = _run(*(["--on-host"] if mode == "on-host" else []), cwd=str(tmp_path))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = cp.stdout
    assert "hostname=c1" in out and "file=c1" in out, out
    assert "172.17.0.2      c1" in out or "172.17.0.2 c1" in " ".join(out.split()), out  # /etc/hosts as Docker's
    assert "172.17.0.2/16" in out, out   # c1's netns
    assert str(tmp_path) in out, out     # in the directory the user ran it from
    assert (socket.gethostname(), Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else "") \
        == before
