"""Output while nsbox works (issue 18): each recipe's result is printed as soon as it
is known, and a Ctrl-C (or SIGTERM) in the middle of a run keeps what finished.

A recipe directory holds a fast recipe (one check that passes at once) and a slow one
(a check that expects no answer where b answers, re-probed for --settle 60 s).
The fast recipe's section must reach stdout while the slow one still runs; the signal
then ends the run with 128+N and a report that has the fast recipe's result and the
slow one "interrupted". Every process here is ours, ended by pid (or its own process
group, for a terminal's Ctrl-C); every wait is bounded.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from tests.support.paths import REPO, recipe_dir


pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter")]

RECIPES = """
    from nsbox.recipe import recipe

    def pair(lab):
        lab.require("veth")
        a, b = lab.node("a"), lab.node("b")
        lab.veth(a, "eth0", b, "eth0")
        a.address("eth0", "10.78.0.1/24")
        b.address("eth0", "10.78.0.2/24")
        b.serve("tcp", 7)

    @recipe("ux-fast")
    def fast(lab):
        '''a reaches b's echo server: passes at once.'''
        pair(lab)
        lab.expect("a", "b", "tcp", 7)

    @recipe("ux-slow")
    def slow(lab):
        '''expects no answer where b answers: re-probed until --settle runs out.'''
        pair(lab)
        lab.expect("a", "b", "tcp", 7, allow=False)
"""


@pytest.fixture
def recipes(tmp_path):
    return recipe_dir(tmp_path, "ux.py", RECIPES)


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "nsbox", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def _read_until(p: subprocess.Popen, stream, marker: bytes, seconds: float) -> bytes:
    """What STREAM gave until a line holding MARKER (or fail after SECONDS)."""
    got = b""
    end = time.monotonic() + seconds
    fd = stream.fileno()
    while marker not in got:
        left = end - time.monotonic()
        if left <= 0:
            _end(p)
            pytest.fail(f"no {marker!r} within {seconds} s; got {got.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                _end(p)
                pytest.fail(f"stream ended before {marker!r}; got {got.decode(errors='replace')}")
            got += chunk
    return got


def _end(p: subprocess.Popen) -> None:
    """A failed test's run ended: SIGTERM first (an --on-host lab is torn down), then SIGKILL."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)  # our own process group (start_new_session)
        try:
            p.communicate(timeout=30)
            return
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)


def _finish(p: subprocess.Popen) -> tuple[int, bytes, bytes]:
    try:
        out, err = p.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        _end(p)
        pytest.fail("nsbox did not end within 40 s of the signal")
    return p.returncode, out, err


@pytest.mark.parametrize("where", ["sandbox", "on-host"])
def test_ctrl_c_mid_run_keeps_the_finished_result(recipes, where):
    extra = ["--on-host"] if where == "on-host" else []
    p = _start("run", "--recipes", recipes, "ux-fast", "ux-slow", "--settle", "60", "--timeout", "0.5", *extra)
    t0 = time.monotonic()
    # streamed: ux-fast's verdict is on stdout while ux-slow runs (its settle is 60 s)
    early = _read_until(p, p.stdout, b"PASS  1 of 1 checks passed", 30)
    assert p.poll() is None, "the run ended before the slow recipe could be interrupted"
    assert b"ux-fast" in early and b"ux-slow" not in early
    time.sleep(1.0)  # into ux-slow's probes
    # a terminal's Ctrl-C: SIGINT to the whole foreground process group
    os.killpg(p.pid, signal.SIGINT)
    rc, out, err = _finish(p)
    report = (early + out).decode()
    assert rc == 130, (rc, report, err.decode())
    assert time.monotonic() - t0 < 50          # not the 60 s settle waited out
    assert "ux-slow  interrupted (SIGINT) before it finished" in report.replace("\n        ", " "), report
    assert "  PASS  ux-fast" in report and "  FAIL  ux-slow" in report, report     # the summary has both
    assert report.count("ux-fast  a reaches b") == 1, report   # its section printed once, as it came
    assert report.rstrip().endswith("1 passed, 1 failed, 0 skipped"), report
    assert all(len(line) <= 80 for line in report.splitlines()), report
    assert b"nsbox: interrupted" in err


def test_sigterm_keeps_the_finished_result_in_the_json_report(recipes, tmp_path):
    out_file = tmp_path / "report.json"
    p = _start("run", "--recipes", recipes, "ux-fast", "ux-slow", "--settle", "60", "--timeout", "0.5",
               "--format", "json", "--output", str(out_file), "--verbose")
    # --verbose: progress on stderr though it is a pipe; wait until the slow recipe verifies
    _read_until(p, p.stderr, b"[2/2] ux-slow: built", 30)
    assert p.poll() is None, "the run ended before the slow recipe could be interrupted"
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)   # `timeout 60 nsbox run ...` sends this to nsbox alone
    rc, out, _ = _finish(p)
    assert rc == 143 and out == b""
    report = json.loads(out_file.read_text())
    by_name = {r["recipe"]: r for r in report["results"]}
    assert by_name["ux-fast"]["status"] == "pass" and len(by_name["ux-fast"]["checks"]) == 1
    assert by_name["ux-slow"]["status"] == "fail"
    assert by_name["ux-slow"]["error"] == "interrupted (SIGTERM) before it finished"


def test_piped_progress_is_silent_and_the_report_stable(recipes):
    """Piped (no terminal, no --verbose): stderr holds nothing, stdout only the report."""
    p = _start("run", "--recipes", recipes, "ux-fast")
    rc, out, err = _finish(p)
    assert rc == 0 and err == b"", err
    text = out.decode()
    assert text.startswith("ux-fast  a reaches b's echo server: passes at once.\n"), text
    assert text.rstrip().endswith("1 passed, 0 failed, 0 skipped")
    q = _start("run", "--recipes", recipes, "ux-fast", "--quiet")
    rc, out, err = _finish(q)
    assert rc == 0 and err == b"" and out.decode() == "1 passed, 0 failed, 0 skipped\n", out
