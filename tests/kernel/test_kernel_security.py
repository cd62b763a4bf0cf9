"""The security issue, tried as an attacker or a careless user would, on the real kernel.

- a module planted in the working directory is never imported by the root process
  (the sandboxed nsbox is a fork of the installed command, whose import path never
  holds the working directory, and it imports rich, pyroute2... only after the fork);
- recipe code never runs in the host's network namespace, nor with the power to
  get back into it (run in the sandbox, run --on-host, list);
- NSBOX_SANDBOX=1 from the caller is not believed, and never reaches --then;
- a signal at any moment from 0 s on ends the run with 128+signum, no traceback,
  nothing left (the autouse host snapshot checks the last part).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.tools("ip", "unshare", "nsenter", "setpriv"),
]

PLANTED = ("click", "rich", "pyroute2", "iptc", "nsbox_evil", "encodings_evil")


def console_script(tmp_path: Path) -> Path:
    """What `pip install` writes to /usr/local/bin/nsbox: a script outside the working directory."""
    script = tmp_path / "bin" / "nsbox"
    script.parent.mkdir()
    script.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom nsbox.entry import main\nmain()\n")
    return script


def run_script(script: Path, *args: str, cwd: Path, env: dict | None = None, timeout: float = 120):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NSBOX_", "PYTHON"))}
    base.update(env or {})
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=base, capture_output=True,
                          text=True, timeout=timeout)


def test_modules_in_the_working_directory_are_never_imported(tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "imported"
    for mod in PLANTED:
        (evil / f"{mod}.py").write_text(f"open({str(marker)!r}, 'a').write('{mod}\\n')\n")
    (evil / "nsbox").mkdir()  # a whole fake package, too
    (evil / "nsbox" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('nsbox\\n')\n")
    script = console_script(tmp_path)
    p = run_script(script, "run", "bridge-mode", "--format", "json", cwd=evil)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"] == {"pass": 1, "fail": 0, "skip": 0}
    assert not marker.exists(), f"imported from the working directory: {marker.read_text()}"


RECIPE_SPY = """
    import ctypes, json, os
    from nsbox.recipe import recipe

    def spy(where):
        libc = ctypes.CDLL(None, use_errno=True)
        # In the sandbox /proc/1 is nsbox itself; in the jail it is the host's init.
        try:
            other = os.readlink("/proc/1/ns/net") != os.readlink("/proc/self/ns/net")
            fd = os.open("/proc/1/ns/net", os.O_RDONLY) if other else -1
        except PermissionError:  # without capabilities, not even a look
            fd = -1
        setns = libc.setns(fd, 0x40000000) if fd >= 0 else -1
        err = ctypes.get_errno()
        with open({out!r}, "a") as f:
            f.write(json.dumps({{"where": where, "netns": os.readlink("/proc/self/ns/net"),
                                "setns_host": setns if fd >= 0 else None, "errno": err,
                                "run_netns": os.listdir("/run/netns") if os.path.isdir("/run/netns") else None}}) + "\\n")
        if fd >= 0:
            os.close(fd)

    spy("import")

    @recipe("spy")
    def build(lab):
        '''Records where its code runs.'''
        spy("build")
        z = lab.node("z")
        lab.veth(z, "eth0", lab.host, "vz")
        z.address("eth0", "10.9.0.2/24")
        lab.host.address("vz", "10.9.0.1/24")
        lab.expect("z", "host", "icmp")
"""


@pytest.mark.parametrize("args", [["run", "spy"], ["run", "spy", "--on-host"], ["list"]],
                         ids=["run", "run-on-host", "list"])
def test_recipe_code_cannot_reach_the_host_network(tmp_path, nsbox, args):
    out = tmp_path / "spy.jsonl"
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "spy.py").write_text(textwrap.dedent(RECIPE_SPY.format(out=str(out))))
    host_netns = os.readlink("/proc/self/ns/net")
    p = nsbox.run(*args, "--recipes", str(recipes))
    assert p.returncode == 0, p.describe()
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert {s["where"] for s in seen} >= {"import"}
    for s in seen:
        assert s["netns"] != host_netns, f"recipe code ran in the host's netns: {s}"
        assert s["setns_host"] != 0, f"recipe code could setns() into pid 1's netns: {s}"
        assert not s["run_netns"], f"recipe code saw the host's /run/netns: {s}"


def _run_mounts(pid: str = "self") -> list[str]:
    return [ln for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if ln.split()[4] == "/run"]


def test_a_forged_sandbox_marker_is_not_believed(tmp_path):
    # Old nsbox mounted a tmpfs over the caller's /run when NSBOX_SANDBOX=1 was set.
    # Contain that possibility in a private mount namespace and look inside it.
    env_out = tmp_path / "then-env"
    script = console_script(tmp_path)
    inner = (f"{sys.executable} {script} run bridge-mode --format json --then 'env > {env_out}' >/dev/null; "
             f"echo rc=$?; grep -c ' /run ' /proc/self/mountinfo")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NSBOX_", "PYTHON"))}
    before = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             "grep -c ' /run ' /proc/self/mountinfo"], capture_output=True, text=True)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
                       env={**base, "NSBOX_SANDBOX": "1"}, capture_output=True, text=True, timeout=120)
    rc_line, count = p.stdout.split()
    assert rc_line == "rc=0", p.stderr
    assert count == before.stdout.strip(), "nsbox mounted over the caller's /run"
    assert "NSBOX_SANDBOX" not in env_out.read_text(), "the sandbox marker leaked into --then"


def test_the_sandbox_marker_does_not_reach_then(nsbox, tmp_path):
    env_out = tmp_path / "then-env"
    p = nsbox.run("run", "bridge-mode", "--format", "json", "--then", f"env > {env_out}")
    assert p.returncode == 0, p.describe()
    text = env_out.read_text()
    assert "NSBOX_NETNS_HOST=" in text and "NSBOX_SANDBOX" not in text


# -- signals at any moment ---------------------------------------------------------------

def _interpreter_start_up(rc: int, sig: int, stderr: str) -> bool:
    """The signal came while Python itself was starting, before nsbox's first line:
    SIGTERM/SIGHUP kill it (a shell shows 128+N), a SIGINT during `import site` is
    Python's own 'Fatal Python error' (exit 1). No nsbox code is in the traceback."""
    if f'File "{REPO / "nsbox"}/' in stderr:  # a frame of nsbox's own code
        return False
    return rc == -sig or (sig == signal.SIGINT and rc == 1 and "Fatal Python error: init_" in stderr)


@pytest.mark.parametrize("mode", ["sandbox", "on-host"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_at_any_moment_ends_the_run_with_128_plus_signum(nsbox, kernel, host_unchanged, mode, sig):
    rng = random.Random(f"{mode}-{sig}-{os.getpid()}")
    # Most of the weight on the first half second (start-up, where signals used to be lost).
    delays = [0.0] + [rng.uniform(0, 0.5) for _ in range(4)] + [rng.uniform(0.5, 1.5)]
    args = ["run", "bridge-mode", "--format", "json", "--then", "sleep 30"]
    if mode == "on-host":
        args.append("--on-host")
    for delay in delays:
        p = nsbox.popen(*args)
        time.sleep(delay)
        os.kill(p.pid, sig)  # to the supervisor only, as `kill PID` does
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            pytest.fail(f"{sig.name} after {delay:.3f} s was lost: the run went on")
        if not _interpreter_start_up(p.returncode, sig, err):
            assert p.returncode == 128 + sig, f"{sig.name} after {delay:.3f} s: exit {p.returncode}\n{err}"
            assert "Traceback" not in err and "Aborted" not in err and "Exception ignored" not in err, err
        problems = host_unchanged.problems(within=5.0)
        assert not problems, f"{sig.name} after {delay:.3f} s left: {problems}"
