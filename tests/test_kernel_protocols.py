"""The sctp probe protocol (nsbox/kinds/protocols/sctp.py), added to prove a new protocol
is one module: on a kernel with SCTP a lab's sctp check passes, and fails when a rule
drops SCTP; on a kernel without it (socket() refused: EPROTONOSUPPORT, as here on a
kernel built without CONFIG_IP_SCTP) the recipe SKIPs with the reason. Whether the kernel
has SCTP is asked independently: a python socket() in a fresh netns (unshare -n)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter")]

RECIPE = """
    from nsbox.recipe import Param, recipe

    @recipe("sctp-echo", params=[Param("drop", False, "b drops sctp in INPUT")])
    def build(lab, drop):
        '''a reaches b's SCTP echo server on port 9.'''
        lab.require("veth")
        a, b = lab.node("a"), lab.node("b")
        lab.veth(a, "eth0", b, "eth0")
        a.address("eth0", "10.78.0.1/24")
        b.address("eth0", "10.78.0.2/24")
        b.serve("sctp", 9)
        if drop:
            b.iptables("filter").append("INPUT", "-p sctp -j DROP")
        lab.expect("a", "b", "sctp", 9)
"""


def kernel_has_sctp() -> bool:
    probe = "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)"
    return subprocess.run(["unshare", "-n", sys.executable, "-c", probe], capture_output=True,
                          timeout=20).returncode == 0


@pytest.fixture
def recipes(tmp_path):
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "sctp.py").write_text(textwrap.dedent(RECIPE))
    return str(d)


def test_sctp_check_passes_or_skips_with_the_reason(nsbox, recipes):
    run = nsbox.run("run", "sctp-echo", "--recipes", recipes, "--format", "json", "--timeout", "0.5")
    r = run.result
    if not kernel_has_sctp():
        assert run.returncode == 4, run.describe()  # everything skipped (kselftest's convention)
        assert (r["status"], r["skip_reason"]) == ("skip", "this kernel lacks sctp (Protocol not supported)"), r
        return
    assert run.returncode == 0 and r["status"] == "pass", run.describe()
    assert run.checks()["sctp/9 a->b"]["observed"] == "allow"


def test_sctp_check_fails_when_a_rule_drops_sctp(nsbox, recipes):
    if not kernel_has_sctp():
        pytest.skip("this kernel has no SCTP (socket() in a fresh netns refused)")
    run = nsbox.run("run", "sctp-echo", "--recipes", recipes, "--format", "json", "--timeout", "0.5",
                    "--set", "drop=true")
    assert run.returncode == 1, run.describe()
    assert run.checks()["sctp/9 a->b"]["observed"] == "deny"
