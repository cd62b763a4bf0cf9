"""nsbox as an unprivileged user (uid 65534, nobody): the sandbox needs no root.

The default python3 on these machines lives under /root (mode 700), which nobody
cannot even enter, so these tests run a world-readable virtualenv made from the
distribution's /usr/bin/python3: /opt/nsbox/venv, made by install.sh (override
with NSBOX_TEST_PYTHON). nsbox and the recipes are copied to a world-readable
temporary folder and run from there, as nobody could not read the checkout in
general. The tests themselves run as root: they switch user with setpriv.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.checkout import world_readable_copy
from tests.support.cmd import describe

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: switches to uid 65534 with setpriv"),
    pytest.mark.tools("setpriv", "unshare", "ip"),
]

NOBODY = 65534
DEFAULT_PYTHON = "/opt/nsbox/venv/bin/python"


@pytest.fixture(scope="module")
def python() -> str:
    path = os.environ.get("NSBOX_TEST_PYTHON", DEFAULT_PYTHON)
    if not os.access(path, os.X_OK):
        pytest.skip(f"no world-readable Python for uid {NOBODY} at {path}: run ./install.sh as root "
                    f"(makes /opt/nsbox/venv), or set NSBOX_TEST_PYTHON")
    return path


@pytest.fixture(scope="module")
def tree():
    """nsbox/ and recipes/ copied into a folder everyone can read (and nobody cannot write)."""
    with world_readable_copy("nsbox-nobody-") as d:
        yield d


def as_nobody(python: str, tree: Path, *args: str, wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
           "PYTHONPATH": str(tree), "LANG": "C.UTF-8"}
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *wrap,
            python, "-m", "nsbox", *args]
    return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=120,
                          start_new_session=True)


def test_python_is_usable_by_nobody(python, tree) -> None:
    cp = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-c",
                         "import os, nsbox, pyroute2, iptc, click; print(os.getuid(), nsbox.__file__)"],
                        cwd=tree, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(tree)},
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, describe(cp)
    uid, path = cp.stdout.split()
    assert uid == str(NOBODY)
    assert path == str(tree / "nsbox" / "__init__.py"), "nobody must run the copied tree"


def test_bridge_mode_as_nobody(python, tree) -> None:
    # The real tools look at the live lab (--then output goes to stderr with --format json).
    then = ("id -u; ip netns exec c1 ping -c1 -W2 172.17.0.3; "
            "ip netns exec c1 curl -s -m 5 http://203.0.113.1/source; echo")
    cp = as_nobody(python, tree, "run", "bridge-mode", "--format", "json", "--then", then)
    assert cp.returncode == 0, describe(cp)
    assert json.loads(cp.stdout)["summary"] == {"pass": 1, "fail": 0, "skip": 0}, describe(cp)
    assert "1 received, 0% packet loss" in cp.stderr, describe(cp)
    assert re.search(r"^203\.0\.113\.2:\d+$", cp.stderr, re.M), describe(cp)  # masqueraded


def test_on_host_as_nobody_is_refused_in_one_line(python, tree) -> None:
    cp = as_nobody(python, tree, "run", "bridge-mode", "--on-host")
    assert cp.returncode == 2, describe(cp)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: ") and "root" in lines[0], describe(cp)
    assert cp.stdout == ""


def test_refused_user_namespace_is_one_line(python, tree) -> None:
    """Where the kernel refuses a user namespace, nsbox says so in one line.

    Forced honestly: nobody runs nsbox inside `unshare --user` WITHOUT a uid map, where
    its uid is unmapped, and the kernel refuses a nested user namespace to an unmapped
    uid (EPERM), while every sysctl still reads as allowed."""
    cp = as_nobody(python, tree, "run", "bridge-mode", wrap=("unshare", "--user"))
    assert cp.returncode == 1, describe(cp)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, describe(cp)
    assert lines[0].startswith("nsbox: error: ") and "user namespace" in lines[0], describe(cp)
    assert "Traceback" not in cp.stderr
    assert cp.stdout == ""


def test_clean_as_nobody_is_refused_in_one_line(python, tree) -> None:
    cp = as_nobody(python, tree, "clean")
    assert cp.returncode == 2, describe(cp)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: ") and "needs root" in lines[0], describe(cp)
