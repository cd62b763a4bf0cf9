"""Speed as a user waits for it (issue 15), on the real kernel.

- A deny check that names its rule ends when that rule's packet counter has risen,
  not after its probe's timeout; the kernel's own counter (iptables-save -c in the
  live lab) shows the rule did count the probe.
- Deny checks that name no rule run at the same time: a lab waits one timeout.
- The lab's servers are a process of their own, as `ss -p` shows a learner.
"""

from __future__ import annotations

import os
import re
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces")]

DIRECT = "tcp/80 internet->c2 (direct routing)"
ROUTER = "http internet->lan (host is no router)"


def test_named_denies_end_when_their_rule_counts_the_probe(nsbox):
    # A 5 s timeout: waiting it out would take 10 s for the two denies.
    r = nsbox.run("run", "bridge-mode", "--timeout", "5", "--format", "json",
                  "--then", "iptables-save -c -t raw; iptables-save -c -t filter")
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert checks[DIRECT]["observed"] == \
        "deny, dropped by host raw -A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP"
    assert checks[ROUTER]["observed"] == "deny, dropped by host filter FORWARD policy"
    for name in (DIRECT, ROUTER):
        c = checks[name]
        assert c["passed"] and c["duration_ms"] < 2000, c  # not the 5 s timeout
        assert "counted the packet" in c["detail"] and "refused" not in c["detail"], c
    # The kernel's word: the raw DROP for c2 and FORWARD's policy counted packets.
    raw = re.search(r"^\[(\d+):\d+\] -A PREROUTING -d 172\.17\.0\.3/32 ! -i docker0 -j DROP$", r.stderr, re.M)
    policy = re.search(r"^:FORWARD DROP \[(\d+):\d+\]$", r.stderr, re.M)
    assert raw and int(raw.group(1)) >= 1 and policy and int(policy.group(1)) >= 1, r.stderr


UNNAMED = """
    from nsbox.recipe import recipe

    @recipe("unnamed-denies")
    def build(lab):
        '''Six nodes on a bridge; n0 and n1 drop tcp/7: ten deny checks naming no rule.'''
        lab.require("veth", "bridge")
        lab.host.bridge("br0")
        nodes = []
        for i in range(6):
            c = lab.node(f"n{i}")
            lab.veth(c, "eth0", lab.host, f"v{i}", b_master="br0")
            c.address("eth0", f"10.10.0.{i + 2}/24")
            c.serve("tcp", 7)
            nodes.append(c)
        for n in nodes[:2]:
            n.iptables("filter").append("INPUT", "-p tcp -m tcp --dport 7 -j DROP")
        lab.expect_matrix(nodes, "tcp", 7, expected=lambda s, d: d not in ("n0", "n1"))
"""


def test_unnamed_denies_wait_one_timeout_together(nsbox, tmp_path):
    (tmp_path / "unnamed.py").write_text(textwrap.dedent(UNNAMED))
    r = nsbox.run("run", "unnamed-denies", "--recipes", str(tmp_path), "--timeout", "1.5", "--format", "json")
    assert r.returncode == 0, r.describe()
    denies = [c for c in r.result["checks"] if c["expected"] == "deny"]
    assert len(denies) == 10 and all(c["detail"].startswith("timeout") for c in denies), denies
    # Ten timeouts of 1.5 s one after another (or eight at a time) would be 3 s at least.
    assert r.result["verify_ms"] < 2900, r.result["verify_ms"]


def test_servers_are_a_process_of_their_own(nsbox):
    r = nsbox.run("run", "bridge-mode", "--format", "json", "--then-in", "c1", "--then", "ss -Hltunp")
    assert r.returncode == 0, r.describe()
    listening = [ln for ln in r.stderr.splitlines() if re.search(r":(7|80)\s", ln)]
    assert len(listening) == 3, r.stderr  # tcp/7, udp/7, tcp/80
    # one process per container, named after it (c1's own: issue 16, pods as on a real node)
    pids = {int(p) for ln in listening for p in re.findall(r'"c1",pid=(\d+)', ln)}
    assert len(pids) == 1 and 1 not in pids, r.stderr  # not nsbox itself (pid 1 of the sandbox)
