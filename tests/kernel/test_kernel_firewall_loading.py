"""Nodes' firewalls load side by side (kernel/realize.py _Loading): every node still
gets exactly its own rules, and a node whose load fails ends the build with that
node's error and nothing left behind.

Each case runs realize() in a child with a network and mount namespace of its own and
a private /run (as the sandbox has), and judges with iptables-save run by nsenter in
each node's netns, not with nsbox's report."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces")]

CHILD = r'''
import json, os, subprocess, sys, time
from nsbox.errors import KernelError
from nsbox.host import netns
from nsbox.kernel import firewall, realize
from nsbox.model import Lab
from nsbox.validate import validate
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
lab = Lab("loading")
names = ["a", "b", "c", "d"]
for n in names:
    node = lab.node(n)
    node.iptables("filter").new_chain(f"ONLY-{n.upper()}")
    node.iptables("filter").append("INPUT", f"-s 10.9.9.9/32 -j ONLY-{n.upper()}")
    node.iptables("nat").append("POSTROUTING", f"-o eth{names.index(n)} -j MASQUERADE")
validate(lab)
fail = sys.argv[1] if len(sys.argv) > 1 else ""
real = firewall.apply
def apply(node, fw, flavour="legacy"):
    time.sleep(0.05)  # long enough that the others are loading meanwhile
    if node == fail:
        raise KernelError(f"{node}: iptables-restore: planted failure")
    return real(node, fw, flavour)
firewall.apply = apply
out = {}
try:
    done = realize.realize(lab)
except KernelError as e:
    out["error"] = str(e)
else:
    for n in names:
        out[n] = subprocess.run(["nsenter", f"--net={done.path(n)}", "iptables-save"],
                                capture_output=True, text=True).stdout
    done.teardown()
out["left"] = sorted(os.listdir(netns.NETNS_RUN_DIR)) if os.path.isdir(netns.NETNS_RUN_DIR) else []
print(json.dumps(out))
'''


def _run(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "--mount", "--net", "--fork", sys.executable, "-c", CHILD, *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_each_node_gets_its_own_rules():
    out = _run()
    assert out["left"] == []
    for i, n in enumerate("abcd"):
        mine = [ln for ln in out[n].splitlines() if ln.startswith("-A")]
        assert f"-A INPUT -s 10.9.9.9/32 -j ONLY-{n.upper()}" in mine, out[n]
        assert f"-A POSTROUTING -o eth{i} -j MASQUERADE" in mine, out[n]
        assert len(mine) == 2, mine  # nobody else's


def test_a_node_whose_rules_fail_ends_the_build_with_its_error_and_nothing_left():
    out = _run("c")
    assert out["error"] == "c: iptables-restore: planted failure"
    assert out["left"] == []
