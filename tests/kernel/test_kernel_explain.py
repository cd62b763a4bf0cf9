"""`nsbox explain RECIPE | bash` in a fresh sandbox rebuilds a lab that the
recipe's own checks pass.

The script runs under bash in `unshare --user --map-root-user --net --mount
--pid --fork` with a tmpfs on /run, so its `ip netns add` pins land in that
sandbox only. Then nsbox's verifier (tests/support/observers/verify_explained.py) is
pointed at those pins: nsbox builds nothing there, the script built it all.
"""

import json
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.explain_harness import run_script_and_verify, shipped_recipes

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "unshare", "iptables-restore")]

@pytest.mark.parametrize("recipe", shipped_recipes())
def test_explained_script_rebuilds_a_lab_that_verifies(nsbox, recipe, tmp_path):
    from nsbox.cli import load_labs
    from nsbox.host import features

    lacking = features.missing(frozenset(load_labs((recipe,), {}, ())[0].requires))
    if lacking:  # the script would stop where the kernel lacks the feature, as nsbox run SKIPs
        pytest.skip(f"{recipe}: " + "; ".join(lacking.values()))
    explained = nsbox.run("explain", recipe)
    assert explained.returncode == 0, explained.describe()
    assert explained.stdout.startswith("#!/bin/bash\n")
    done = run_script_and_verify(explained.stdout, recipe, tmp_path)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("PASS ") for line in lines), done.stdout


def test_explained_bridge_mode_with_a_parameter(nsbox, tmp_path):
    explained = nsbox.run("explain", "bridge-mode", "--set", "containers=3")
    assert explained.returncode == 0, explained.describe()
    assert "ip netns add c3\n" in explained.stdout and "ip netns add c4\n" not in explained.stdout
    done = run_script_and_verify(explained.stdout, "bridge-mode", tmp_path, ("containers=3",))
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_the_verifier_sees_what_the_script_left_out(nsbox, tmp_path):
    """Negative control: without c1's default route, its NAT check must fail, so a
    passing run above is the script's doing, not the verifier's."""
    explained = nsbox.run("explain", "bridge-mode")
    line = "ip -n c1 route add default via 172.17.0.1\n"
    assert line in explained.stdout
    done = run_script_and_verify(explained.stdout.replace(line, ""), "bridge-mode", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL http c1->internet (NAT)" in done.stdout


def test_script_state_matches_what_nsbox_builds(nsbox, tmp_path):
    """Addresses and routes the script makes equal those `nsbox run` makes (read by ip -j)."""
    dump = ("for n in host internet c1 c2; do echo \"== $n\"; "
            "ip -n $n -j addr show | python3 -c 'import json,sys; "
            "print(sorted((a[\"ifname\"], a[\"operstate\"], i[\"local\"], i[\"prefixlen\"], i.get(\"broadcast\")) "
            "for a in json.load(sys.stdin) for i in a[\"addr_info\"] if i[\"family\"] == \"inet\"))'; "
            "ip -n $n route show; done")
    out = tmp_path / "run.txt"
    # A bridge's operstate follows its ports through the kernel's linkwatch, which runs a
    # non-urgent event up to a second later: nsbox's checks can be done before that, so
    # wait (bounded) for docker0 to show UP, as the script's slower build always does.
    settle = ("for i in $(seq 30); do ip -n host -j link show docker0 | grep -q '\"operstate\":\"UP\"' "
              "&& break; sleep 0.1; done; ")
    ran = nsbox.run("run", "bridge-mode", "--format", "json",
                    "--then", settle + dump + f" > {out}")
    assert ran.returncode == 0, ran.describe()
    explained = nsbox.run("explain", "bridge-mode")
    (tmp_path / "lab.sh").write_text(explained.stdout)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
                           "--kill-child", "--mount-proc", "sh", "-c",
                           f"mount -t tmpfs tmpfs /run && bash {tmp_path / 'lab.sh'} && {dump}"],
                          capture_output=True, text=True, timeout=120, start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert "('docker0', 'UP', '172.17.0.1', 16, '172.17.255.255')" in done.stdout
    assert done.stdout == out.read_text()
