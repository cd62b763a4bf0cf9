"""Nothing is left behind: after a pass, a fail, a fault in the middle of a build,
Ctrl-C, SIGTERM, SIGKILL or bad input, the real host looks exactly as before.

The autouse fixture `host_unchanged` (conftest.py) compares the real host before
and after every test here (netns, links, addresses, routes, iptables, mounts,
conntrack, /run/nsbox, and processes we started). Where a test needs the host
clean at a precise moment it also asserts it itself, through the same guard.

In the sandbox the kernel guarantees cleanup once the sandbox's processes are
gone, so there the tests are about processes and exit codes; --on-host is where
teardown is nsbox's own job and the tests matter most.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, veth pairs and iptables rules"),
    pytest.mark.tools("ip", "unshare", "nsenter", "iptables-save", "conntrack"),
]

MODES = ["sandbox", "on-host"]


def mode_args(mode: str) -> list[str]:
    return ["--on-host"] if mode == "on-host" else []


# A lab whose check must fail: b drops tcp/7 in INPUT while the recipe expects it allowed.
# The icmp check proves the veth itself works, so the failure is the rule's doing.
BLOCKED_PAIR = textwrap.dedent('''
    """Test recipe: two nodes on a veth, one check blocked by a filter DROP rule."""
    from nsbox.model import Lab
    from nsbox.recipe import recipe


    @recipe("blocked-pair")
    def build(lab: Lab) -> None:
        """Two nodes on a veth; b drops tcp/7 although tcp/7 is expected to pass."""
        lab.require("veth")
        b = lab.node("b")
        lab.veth(lab.host, "eth0", b, "eth0")
        lab.host.address("eth0", "198.51.100.1/24")
        b.address("eth0", "198.51.100.2/24")
        b.serve("tcp", 7)
        b.iptables("filter").append("INPUT", "-p tcp -m tcp --dport 7 -j DROP")
        lab.expect("host", "b", "tcp", 7)
        lab.expect("b", "host", "icmp")
''')


@pytest.fixture
def blocked_pair_dir(tmp_path):
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "blocked_pair.py").write_text(BLOCKED_PAIR)
    return d


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _stop(p: subprocess.Popen) -> tuple[str, str]:
    """Kill a still-running nsbox (and its process group) and collect its output."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        return p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return "", ""


def _start_and_wait_for_then(kernel, nsbox, mode: str, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start a 50-container bridge-mode whose --then sleeps, and wait until the lab is up
    and the sleep runs inside it. Returns the process and the sleep's pid."""
    p = nsbox.popen("run", "bridge-mode", "--set", "containers=50", *mode_args(mode), *extra,
                    "--then", "sleep 30")
    sleep_pid = kernel.wait_until(lambda: p.poll() is None and kernel.find_descendant(p.pid, "sleep"), 30)
    if not sleep_pid:
        out, err = _stop(p)
        pytest.fail(f"the lab never reached --then (exit {p.returncode}):\n{out}\n{err}")
    if mode == "on-host":  # another lab may exist too (test_clean_...): count this run's prefix
        labs = Counter(n.split("-", 1)[0] for n in kernel.netns_list() if kernel.ONHOST_NETNS.match(n))
        assert 53 in labs.values(), labs
    return p, sleep_pid


# --------------------------------------------------------------------------- pass, fail

@pytest.mark.parametrize("mode", MODES)
def test_passing_run_leaves_nothing(mode, nsbox, host_unchanged) -> None:
    run = nsbox.run("run", "bridge-mode", *mode_args(mode))
    assert run.returncode == 0, run.describe()
    assert "11 of 11 checks passed" in run.stdout
    host_unchanged.assert_clean()


@pytest.mark.parametrize("mode", MODES)
def test_failing_run_leaves_nothing(mode, nsbox, blocked_pair_dir, host_unchanged) -> None:
    run = nsbox.run("run", "blocked-pair", "--recipes", str(blocked_pair_dir), "--format", "json",
                    "--timeout", "0.3", *mode_args(mode))
    assert run.returncode == 1, run.describe()
    r = run.result
    assert (r["status"], r["error"]) == ("fail", None), r
    checks = run.checks()
    assert checks["tcp/7 host->b"]["passed"] is False
    assert (checks["tcp/7 host->b"]["expected"], checks["tcp/7 host->b"]["observed"]) == ("allow", "deny")
    assert checks["icmp b->host"]["passed"] is True, "the veth should work; only the rule blocks"
    assert run.json["summary"] == {"pass": 0, "fail": 1, "skip": 0}
    host_unchanged.assert_clean()


# --------------------------------------------------------------------------- faults in the middle of a build

# bridge-mode with 2 containers takes about 30 kernel steps (realize.py's ticks):
# netns first, then bridge and veths, then per node sysctls, links up, addresses,
# routes and iptables. 0 fails before anything exists, 1 after the first netns, 5
# among the veths, 12 inside the host's configuration, 17 after the host's iptables
# rules were written, 25 among the last container's steps. The error names the step;
# a point past the end would make the run pass and the test fail.
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [0, 1, 5, 12, 17, 25])
def test_fault_injection_leaves_nothing(mode, steps, nsbox, host_unchanged) -> None:
    run = nsbox.run("run", "bridge-mode", "--format", "json", *mode_args(mode),
                    env={"NSBOX_FAULT_AFTER_STEPS": str(steps)})
    assert run.returncode == 1, run.describe()
    r = run.result
    assert r["status"] == "fail"
    assert "injected fault" in (r["error"] or ""), r
    assert r["checks"] == [], "no check may run on a half-built lab"
    host_unchanged.assert_clean(within=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [40, 100])
def test_fault_in_a_big_build_leaves_nothing(steps, mode, nsbox, host_unchanged) -> None:
    run = nsbox.run("run", "bridge-mode", "--set", "containers=20", "--format", "json", *mode_args(mode),
                    env={"NSBOX_FAULT_AFTER_STEPS": str(steps)})
    assert run.returncode == 1, run.describe()
    assert "injected fault" in (run.result["error"] or ""), run.result
    host_unchanged.assert_clean(within=2)


# --------------------------------------------------------------------------- Ctrl-C, SIGTERM, SIGKILL

@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_during_then(mode, kernel, nsbox, host_unchanged) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group."""
    p, sleep_pid = _start_and_wait_for_then(kernel, nsbox, mode)
    try:
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        _stop(p)
    assert p.returncode == 130, f"exit {p.returncode}\n{out}\n{err}"
    assert "interrupted" in err
    assert not kernel.pid_alive(sleep_pid)
    host_unchanged.assert_clean()


def test_ctrl_c_during_an_on_host_build(kernel, nsbox, host_unchanged) -> None:
    """SIGINT while realize is still creating namespaces: the partial lab is undone."""
    p = nsbox.popen("run", "bridge-mode", "--set", "containers=400", "--on-host")
    try:
        started = kernel.wait_until(lambda: p.poll() is not None or any(
            kernel.ONHOST_NETNS.match(n) for n in _ls("/run/netns")), 30, interval=0.002)
        assert started and p.poll() is None, "nsbox ended before it built anything"
        os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        _stop(p)
    assert p.returncode == 130, f"exit {p.returncode}\n{out}\n{err}"
    host_unchanged.assert_clean()


def test_sigkill_of_sandboxed_run(kernel, nsbox, host_unchanged) -> None:
    """kill -9 of the process the user started: nothing of the sandbox may survive it."""
    p, sleep_pid = _start_and_wait_for_then(kernel, nsbox, "sandbox")
    try:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=15)
    finally:
        _stop(p)
    assert p.returncode == -signal.SIGKILL
    assert kernel.wait_until(lambda: not kernel.pid_alive(sleep_pid), 5), \
        f"the sleep inside the sandbox (pid {sleep_pid}) survived SIGKILL of nsbox"
    host_unchanged.assert_clean()


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_to_the_nsbox_process(name, mode, request, kernel, nsbox, host_unchanged) -> None:
    """kill -SIG PID of the process the user started (what systemd, CI timeouts and
    Popen.terminate() do): the run ends within seconds, exit 128+signum, lab torn down."""
    sig = SIGNALS[name]
    p, sleep_pid = _start_and_wait_for_then(kernel, nsbox, mode)
    try:
        os.kill(p.pid, sig)
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        ended = p.poll() is not None
        found = host_unchanged.problems(within=2) if ended else ["nsbox still running"]
    finally:
        _stop(p)
        host_unchanged.clean_up()  # so a leak fails this test only, not the fixture
    assert ended, f"nsbox ignored {name} for 5 s (its --then sleep 30 kept running)"
    assert p.returncode == 128 + sig, f"exit {p.returncode}\n{out}\n{err}"
    assert "interrupted" in err
    assert not kernel.pid_alive(sleep_pid)
    assert not found, f"left behind after {name}:\n" + "\n".join(found)


# --------------------------------------------------------------------------- a forked helper must not act as nsbox

# Libraries fork helpers (pyroute2 0.9 did for Conntrack(netns=...)) and stop them
# with SIGTERM. A helper inherits nsbox's signal handlers; it must exit, not unwind
# a copy of nsbox and tear the lab down under the real one. This plugin (a file in a
# --recipes dir, imported by nsbox before it builds) forks such a helper during
# verification and SIGTERMs it while it sleeps.
FORKING_PLUGIN = textwrap.dedent('''
    """Not a recipe: fork a helper during verification and SIGTERM it."""
    import os
    import signal
    import time

    import nsbox.verify.verifier as _verifier

    _verify = _verifier.verify


    def _verify_with_a_helper(*args, **kwargs):
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        return _verify(*args, **kwargs)


    _verifier.verify = _verify_with_a_helper
''')


@pytest.mark.parametrize("mode", MODES)
def test_forked_helper_does_not_tear_down_the_lab(mode, tmp_path, nsbox) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "forking_helper.py").write_text(FORKING_PLUGIN)
    seen = tmp_path / "then.txt"
    run = nsbox.run("run", "bridge-mode", "--recipes", str(plugins), "--format", "json", *mode_args(mode),
                    "--then", f'ip -j netns list > {seen}.json; curl -s -m 2 http://172.17.0.2/host > {seen}')
    assert "interrupted" not in run.stderr, run.describe()
    assert seen.exists(), f"--then could not enter the lab:\n{run.stderr}"
    listed = {n["name"] for n in json.loads(Path(f"{seen}.json").read_text())}
    assert set(run.result["namespaces"].values()) <= listed
    assert seen.read_text().strip() == "NODE: c1, POD IP:172.17.0.2", "the lab's servers stopped before --then"
    assert run.returncode == 0, run.describe()


# --------------------------------------------------------------------------- bad input

BAD_INPUT = {
    "unknown recipe": ["run", "no-such-recipe"],
    "misspelt recipe": ["run", "bridge-mod"],
    "--set not an integer": ["run", "bridge-mode", "--set", "containers=many"],
    "--set below the minimum": ["run", "bridge-mode", "--set", "containers=1"],
    "--set above the maximum": ["run", "bridge-mode", "--set", "containers=1001"],
    "--set without =": ["run", "bridge-mode", "--set", "containers"],
    "--set unknown parameter": ["run", "bridge-mode", "--set", "bridges=2"],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exit_2_and_host_untouched(case, mode, nsbox, host_unchanged) -> None:
    run = nsbox.run(*BAD_INPUT[case], *mode_args(mode))
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: "), run.describe()
    assert run.stdout == ""
    host_unchanged.assert_clean(within=0)


# --------------------------------------------------------------------------- nsbox clean

# Two on-host bridge-mode labs (53 namespaces each) in the private /run of in_private_run: the
# first killed with SIGKILL (its leftovers are what clean is for), the second alive in --then.
# `nsbox clean` only ever sees these two: it must never judge or remove another user's lab.
CLEAN_SCENARIO = textwrap.dedent('''
    start() {  # NAME: an on-host lab in a session of its own, up when its --then has run
        setsid $NSBOX run bridge-mode --on-host --set containers=50 \\
            --then "touch $OUT/$1.up; exec sleep 60" >"$OUT/$1.out" 2>&1 &
        echo $! > "$OUT/$1.pid"
        for _ in $(seq 600); do [ -e "$OUT/$1.up" ] && return 0; sleep 0.05; done
        echo "$1 never reached --then"; cat "$OUT/$1.out"; return 1
    }
    netns() { ip -j netns list > "$OUT/netns.$1"; ls /run/nsbox > "$OUT/journals.$1"; }
    start dead || exit 1
    dead=$(cat "$OUT/dead.pid")
    netns dead
    kill -KILL "$dead"; wait "$dead"; kill -KILL -- "-$dead" 2>/dev/null  # and its --then
    netns killed
    start live || exit 1
    live=$(cat "$OUT/live.pid")
    netns live
    $NSBOX clean --dry-run > "$OUT/dry.out" 2>&1; echo $? > "$OUT/dry.rc"
    netns dry
    $NSBOX clean > "$OUT/clean.out" 2>&1; echo $? > "$OUT/clean.rc"
    netns cleaned
    $NSBOX clean > "$OUT/again.out" 2>&1
    kill -KILL -- "-$live"; wait "$live"
    exit 0
''')


def test_clean_removes_a_killed_on_host_lab_and_spares_a_live_one(kernel, tmp_path, host_unchanged) -> None:
    """kill -9 --on-host leaves its namespaces (nothing can run teardown); `nsbox clean`
    follows the dead run's journal and removes exactly those, leaving a running lab alone.

    In a mount namespace of its own with an empty /run (kernel.in_private_run): the real
    `nsbox clean` sees only the two labs this test made, never another user's or another
    suite's (and the kernel frees whatever is left when the scenario ends)."""
    done = kernel.in_private_run(CLEAN_SCENARIO, tmp_path)
    assert done.returncode == 0, f"scenario failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"

    def names(tag: str) -> set[str]:
        return {n["name"] for n in json.loads((tmp_path / f"netns.{tag}").read_text() or "[]")}
    dead_lab = names("dead")
    assert len(dead_lab) == 53 and all(kernel.ONHOST_NETNS.match(n) for n in dead_lab), dead_lab
    # The leftovers are real before clean runs: this test could not pass on an empty host.
    assert names("killed") == dead_lab
    assert len([f for f in (tmp_path / "journals.killed").read_text().split() if f.endswith(".journal")]) == 1
    live_lab = names("live") - dead_lab
    assert len(live_lab) == 53
    assert (tmp_path / "dry.rc").read_text().strip() == "0" and "would remove" in (tmp_path / "dry.out").read_text()
    assert dead_lab <= names("dry"), "--dry-run removed something"
    assert (tmp_path / "clean.rc").read_text().strip() == "0", (tmp_path / "clean.out").read_text()
    left = names("cleaned")
    assert not dead_lab & left, f"clean left {sorted(dead_lab & left)}"
    assert live_lab <= left, "clean removed the namespaces of a lab whose nsbox still runs"
    assert (tmp_path / "again.out").read_text().strip() == "nothing to clean"
    host_unchanged.assert_clean()


def test_fault_names_the_plan_step(nsbox, host_unchanged) -> None:
    """The plan makes every namespace first; the step after them is `ip link add docker0`
    (the bridge comes before its ports), and the fault names it by its ip text."""
    from nsbox import recipe

    nodes = len(recipe.get("bridge-mode").build().nodes)
    run = nsbox.run("run", "bridge-mode", "--format", "json", env={"NSBOX_FAULT_AFTER_STEPS": str(nodes)})
    assert run.returncode == 1, run.describe()
    assert "injected fault before host: ip link add docker0 address b2:7c:4e:1a:9d:30 txqueuelen 0 type bridge" in run.result["error"], run.result
    host_unchanged.assert_clean(within=2)
