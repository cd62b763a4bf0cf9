"""The sctp probe protocol (nsbox/kinds/protocols/sctp.py), added to prove a new protocol
is one module. On a kernel with SCTP a lab's sctp check passes, and a deny check passes
only while a rule drops SCTP to its port (the rule's counter rises: dropped_by); on a
kernel without it (socket() refused with EPROTONOSUPPORT: this host's kernel has no
CONFIG_IP_SCTP) the recipe SKIPs with the reason. Whether a kernel has SCTP is asked
independently: a python socket() in a fresh netns (unshare -n). Debian's kernel under
/boot has SCTP (a module): the same recipes are run there in a VM (nsbox run --kernel,\nthe run test_kernel_vm.py shares: tests/support/vm_run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import recipe_dir


pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter")]

RECIPE = """
    from nsbox.recipe import recipe

    RULE = "-p sctp -m sctp --dport 10 -j DROP"


    def lab_of(lab, drop):
        lab.require("veth")
        a, b = lab.node("a"), lab.node("b")
        lab.veth(a, "eth0", b, "eth0")
        a.address("eth0", "10.78.0.1/24")
        b.address("eth0", "10.78.0.2/24")
        b.serve("sctp", 9).serve("sctp", 10)
        if drop:
            b.iptables("filter").append("INPUT", RULE)
        lab.expect("a", "b", "sctp", 9)
        lab.expect("a", "b", "sctp", 10, allow=False, dropped_by=("b", "filter", "INPUT", RULE) if drop else None)


    @recipe("sctp-echo")
    def build(lab):
        '''a reaches b's SCTP echo server on port 9; b drops SCTP to port 10.'''
        lab_of(lab, True)


    @recipe("sctp-echo-open")
    def build_open(lab):
        '''The same without the DROP rule: the port 10 deny check must fail (mutation).'''
        lab_of(lab, False)
"""
ALLOW, DENY = "sctp/9 a->b", "sctp/10 a->b"


def kernel_has_sctp() -> bool:
    probe = "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)"
    return subprocess.run(["unshare", "-n", sys.executable, "-c", probe], capture_output=True,
                          timeout=20).returncode == 0


@pytest.fixture
def recipes(tmp_path):
    return recipe_dir(tmp_path, "sctp.py", RECIPE)


def judge(results: dict[str, dict], has_sctp: bool) -> None:
    """RESULTS: {recipe: its JSON result}."""
    if not has_sctp:
        for r in results.values():
            assert (r["status"], r["skip_reason"]) == ("skip", "this kernel lacks sctp (Protocol not supported)"), r
        return
    closed, open_ = ({c["name"]: c for c in results[n]["checks"]} for n in ("sctp-echo", "sctp-echo-open"))
    assert results["sctp-echo"]["status"] == "pass", results["sctp-echo"]
    assert closed[ALLOW]["observed"] == "allow" and closed[ALLOW]["seen"]["ip"] == "10.78.0.1"
    assert closed[DENY]["passed"] and closed[DENY]["observed"].startswith("deny")
    # the mutation: without the rule the deny check fails, the allow check still passes
    assert open_[ALLOW]["passed"] and not open_[DENY]["passed"] and open_[DENY]["observed"] == "allow"


def test_sctp_on_this_kernel(nsbox, recipes):
    run = nsbox.run("run", "sctp-echo", "sctp-echo-open", "--recipes", recipes, "--format", "json",
                    "--timeout", "0.5")
    has = kernel_has_sctp()
    assert run.returncode == (1 if has else 4), run.describe()  # 4: everything skipped (kselftest's convention)
    judge({r["recipe"]: r for r in run.json["results"]}, has)


def test_sctp_on_debians_kernel_in_a_vm(shared_vm_run):
    """Slow (a TCG boot, ~1 min): the kernel under /boot has SCTP as a module, which the
    guest loads first (the protocol names it: nsbox/vm/guest.py). The run is shared with
    test_kernel_vm.py (tests/support/vm_run.py: these recipes, given an ignored vlan parameter)."""
    shared_vm_run.check_host()
    results = shared_vm_run.results(shared_vm_run.kernel)
    assert {"sctp-echo", "sctp-echo-open"} <= set(results), shared_vm_run.proc.stderr[-3000:]
    config = Path(f"/boot/config-{shared_vm_run.kernel}")
    has = not config.exists() or any(ln in ("CONFIG_IP_SCTP=y", "CONFIG_IP_SCTP=m")
                                     for ln in config.read_text().splitlines())
    judge(results, has)
