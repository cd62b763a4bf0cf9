"""Two suites and a user's live lab on one host disturb nothing.

Two pytest sessions run the same batch of on-host kernel tests at once (each session's labs
appear and vanish during the other's tests), while a third, "another user's", on-host lab is
up beside them, started by neither. Each session's guard (conftest.host_unchanged) must judge
only its own labs and its clean-up must delete only its own: both sessions pass, and the
other user's lab keeps every namespace the whole time (watched with `ip netns list` every
0.1 s). Before the fix, a session's guard counted the other session's and the user's labs as
its own leaks, failed, and deleted them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds on-host labs"),
    pytest.mark.tools("ip", "unshare", "nsenter"),
]

BATCH_ENV = "TESTS_SHARED_HOST_BATCH"  # set only for the two sessions the scenario starts
SCENARIO_ENV = "TESTS_SHARED_HOST_SCENARIO"  # set only inside the private /run of the test below
BATCH = 3


def test_two_suites_and_a_live_lab_share_the_host(kernel, tmp_path: Path, host_unchanged) -> None:
    """The scenario (test_scenario) runs in a mount namespace whose /run is its own
    (kernel.in_private_run), so that other suites on this machine, whose harness may still
    delete labs it did not make, cannot disturb it, and it cannot disturb them. Everything in
    it is real: the on-host labs, their pins in that /run, the root netns they share."""
    done = kernel.in_private_run(
        f"{sys.executable} -m pytest -q -p no:cacheprovider -k test_scenario {Path(__file__)} > $OUT/scenario.out 2>&1;"
        " echo $? > $OUT/scenario.rc", tmp_path, env={SCENARIO_ENV: "1"}, timeout=300)
    out = (tmp_path / "scenario.out").read_text() if (tmp_path / "scenario.out").exists() else ""
    assert done.returncode == 0 and (tmp_path / "scenario.rc").read_text().strip() == "0", (
        f"the scenario failed:\n{out[-6000:]}\n{done.stdout}\n{done.stderr}")
    assert "1 passed" in out, out
    host_unchanged.assert_clean()


@pytest.mark.skipif(os.environ.get(BATCH_ENV) != "1", reason="part of test_two_suites_and_a_live_lab_share_the_host")
@pytest.mark.parametrize("i", range(BATCH))
def test_batch_on_host_lab(i: int, nsbox, host_unchanged) -> None:
    run = nsbox.run("run", "bridge-mode", "--on-host")
    assert run.returncode == 0, run.describe()
    host_unchanged.assert_clean()


def _stop(p: subprocess.Popen) -> tuple[str, str]:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return p.communicate()


@pytest.mark.skipif(os.environ.get(SCENARIO_ENV) != "1", reason="part of test_two_suites_and_a_live_lab_share_the_host")
def test_scenario(kernel, nsbox, tmp_path: Path, host_unchanged) -> None:
    env = {**os.environ, BATCH_ENV: "1", "PYTHONPATH": str(kernel.REPO)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "test_batch_on_host_lab",
            str(Path(__file__))]
    suites = [subprocess.Popen(argv, cwd=kernel.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True) for _ in range(2)]
    # the user's lab: appears while the sessions' tests run, belongs to neither session
    marker = tmp_path / "user-lab.netns"
    user = nsbox.popen("run", "bridge-mode", "--on-host", "--then", f"ip netns identify > {marker}; exec sleep 120")
    try:
        up = kernel.wait_until(lambda: marker.exists() and marker.read_text().strip(), 60)
        assert up, f"the user's lab never came up: {user.poll()}"
        prefix = up.removesuffix("host")
        user_lab = {n for n in kernel.netns_list() if n.startswith(prefix)}
        assert len(user_lab) == 5, user_lab  # bridge-mode: host, internet, lan, c1, c2
        # the attribution the guards rely on: the lab is a suite's foreign lab, not ours
        assert prefix[:15] in kernel.foreign_labs(me=suites[0].pid)
        assert prefix[:15] not in kernel.foreign_labs()

        vanished: list[str] = []
        while any(s.poll() is None for s in suites):
            missing = user_lab - set(kernel.netns_list())
            if missing:
                vanished.append(f"{time.strftime('%T')}: {sorted(missing)}")
            time.sleep(0.1)
        outputs = [s.communicate(timeout=30)[0] for s in suites]
        for s, out in zip(suites, outputs):
            assert s.returncode == 0 and f"{BATCH} passed" in out, f"a suite failed (exit {s.returncode}):\n{out}"
        if vanished:
            ended = user.poll()
            out, err = _stop(user)
            pytest.fail(f"the user's lab lost namespaces while the suites ran: {vanished[:3]} (its nsbox: exit "
                        f"{ended}; stdout {out[-2000:]!r}; stderr {err[-2000:]!r})")
        assert user.poll() is None, "the user's lab ended while the suites ran"
        assert user_lab <= set(kernel.netns_list())
    finally:
        for s in suites:
            if s.poll() is None:
                os.killpg(s.pid, signal.SIGKILL)
                s.wait()
        if user.returncode is None:
            _stop(user)  # the user ends their lab (SIGTERM): nsbox tears it down
    host_unchanged.assert_clean()
