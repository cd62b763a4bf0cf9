"""bridge-mode's deny checks test the firewall: mutants of the recipe, built for real.

bridge-mode has two deny checks, and each names the rule that must drop its probe
(`dropped_by`: nsbox reads that rule's packet counter before and after the probe):

- `tcp/80 internet->c2 (direct routing)`: internet routes 172.17.0.0/16 via the host
  (what Docker 28's raw DROP exists to stop); dropped by raw
  `-A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP`.
- `http internet->lan (host is no router)`: internet routes lan's network via the
  host; dropped by filter FORWARD's policy DROP (dockerd set it when it turned
  ip_forward on).

Each mutant below takes layers away, runs with `--then tests/support/observers/forward_layers.sh`
(curl from internet to c2 and to lan, `iptables-save -c` around each), and the
test judges both what the kernel counted and what nsbox reported:

| mutant                            | failing check   | nsbox observed                         | counters moved by curl internet->c2 |
|-----------------------------------|-----------------|----------------------------------------|-------------------------------------|
| (none)                            | -               | -                                      | raw DROP only                       |
| raw DROP neutralised              | direct routing  | deny, dropped by filter DOCKER's DROP  | DOCKER DROP only                    |
| DOCKER's DROP removed             | - (shadowed)    | -                                      | raw DROP only                       |
| FORWARD ends in ACCEPT            | host is no router | allow                                | raw DROP only                       |
| raw neutralised + DOCKER's DROP removed | direct routing | deny, dropped by FORWARD policy   | FORWARD policy only                 |
| all three                         | both            | allow, allow                           | none: curl gets c2's page           |

DOCKER's DROP (`! -i docker0 -o docker0`) fails no check when it alone is removed,
and cannot: Docker writes a raw DROP for every container address, raw PREROUTING
runs before filter FORWARD, and a packet from outside the bridge to a container's
address is the only kind that rule could drop first (nothing on docker0 but the
containers owns an address; bridge-mode publishes no port, so no DNAT'd packet
reaches it either). The unmutated lab's counters show it: zero for it.

Mutations keep the rule a check names (validation refuses a check naming a rule the
model does not hold): the raw DROP is bypassed by a RETURN in front of it, the policy
by a final ACCEPT rule. Mutants are recipes of their own name (`bridge-mode-mut-*`)
in a tmp dir, never `bridge-mode`: a recipe may not replace another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import mutants

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("iptables-save", "curl", "ip")]

DIRECT = "tcp/80 internet->c2 (direct routing)"
ROUTER = "http internet->lan (host is no router)"
RAW_C2 = "-A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP"
DOCKER_DROP = "-A DOCKER ! -i docker0 -o docker0 -j DROP"
POLICY = ":FORWARD DROP"

MUTANT = """
    from nsbox.model.rules import parse_rule


    @recipe("bridge-mode-mut-{tag}")
    def build(lab):
        '''bridge-mode with layers of its firewall taken away.'''
        _bm.build(lab, containers=2)
        host = lab.host
        if {raw}:
            # c2's packets RETURN (to the policy, ACCEPT) before the raw DROP sees them.
            host.iptables("raw").chains["PREROUTING"].rules.insert(0, parse_rule("-d 172.17.0.3/32 -j RETURN"))
        if {docker}:
            rules = host.iptables("filter").chains["DOCKER"].rules
            rules[:] = [r for r in rules if r.jumps_to != "DROP"]
        if {policy}:
            # Whatever reaches the end of FORWARD is accepted: the DROP policy is never applied.
            host.iptables("filter").append("FORWARD", "-j ACCEPT")
"""


def parse_counters(text: str) -> dict[str, int]:
    """iptables-save -c -> {':CHAIN POLICY' or '-A CHAIN SPEC': packets}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"(:\S+ \S+) \[(\d+):\d+\]", line):
            out[m.group(1)] = int(m.group(2))
        elif m := re.fullmatch(r"\[(\d+):\d+\] (-A .*)", line):
            out[m.group(2)] = int(m.group(1))
    return out


@dataclass
class Mutant:
    run: object  # tests.support.runner.NsboxRun
    dir: Path

    def curl(self, to: str) -> tuple[int, str]:
        """curl's exit status and output (with -s its errors go to the same file)."""
        return int((self.dir / f"curl-{to}.rc").read_text()), (self.dir / f"curl-{to}.out").read_text()

    def dropped(self, to: str) -> bool:
        """curl timed out (28): nothing answered, not refused (7) nor a netns gone (255)."""
        return self.curl(to)[0] == 28

    def moved(self, i: int) -> dict[str, int]:
        """Counters that save i+1 shows higher than save i (what one curl moved)."""
        a, b = (parse_counters((self.dir / f"save{j}.txt").read_text()) for j in (i, i + 1))
        return {k: b[k] - a.get(k, 0) for k in b if b[k] > a.get(k, 0)}

    def saved(self) -> dict[str, int]:
        return parse_counters((self.dir / "save0.txt").read_text())


def run_mutant(nsbox, kernel, tmp_path, tag: str, raw=False, docker=False, policy=False) -> Mutant:
    recipes, obs = tmp_path / "recipes", tmp_path / "observed"
    recipes.mkdir()
    obs.mkdir()
    run = mutants.run_mutant(nsbox, recipes, f"bridge-mode-mut-{tag}",
                             MUTANT.format(tag=tag, raw=raw, docker=docker, policy=policy),
                             base="bridge_mode.py", alias="_bm", then=f"sh {kernel.OBSERVERS}/forward_layers.sh",
                             env={"NSBOX_OBS_DIR": str(obs)}, timeout=120)
    assert (obs / "save2.txt").exists(), run.describe()
    return Mutant(run, obs)


def failed_checks(m: Mutant) -> dict[str, str]:
    return {n: c["observed"] for n, c in m.run.checks().items() if not c["passed"]}


def test_unmutated_raw_drops_direct_routing_and_the_filter_layers_are_shadowed(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "none")
    assert m.run.returncode == 0, m.run.describe()
    assert m.dropped("c2"), m.curl("c2")
    c2 = m.moved(0)
    assert c2.get(RAW_C2, 0) >= 1, c2
    # shadowed: a packet to a container's address never reaches the filter layers
    assert DOCKER_DROP not in c2 and POLICY not in c2, c2
    assert m.dropped("lan"), m.curl("lan")
    lan = m.moved(1)
    assert lan.get(POLICY, 0) >= 1 and RAW_C2 not in lan and DOCKER_DROP not in lan, lan
    # over the whole run (nsbox's own probes included) the DOCKER DROP dropped nothing
    assert m.saved()[DOCKER_DROP] == 0


def test_raw_neutralised_fails_direct_routing_dropped_by_docker_drop(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "noraw", raw=True)
    c2 = m.moved(0)
    assert m.dropped("c2") and c2.get(DOCKER_DROP, 0) >= 1 and RAW_C2 not in c2 and POLICY not in c2, c2
    assert m.run.returncode == 1, m.run.describe()
    assert failed_checks(m) == {DIRECT: f"deny, dropped by host filter {DOCKER_DROP}"}, m.run.describe()


def test_docker_drop_removed_alone_is_shadowed_by_raw(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "nodockerdrop", docker=True)
    c2 = m.moved(0)
    assert DOCKER_DROP not in m.saved(), "the mutant still holds DOCKER's DROP"
    assert m.dropped("c2") and c2.get(RAW_C2, 0) >= 1 and POLICY not in c2, c2
    assert m.run.returncode == 0 and failed_checks(m) == {}, m.run.describe()


def test_forward_accept_fails_host_is_no_router(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "forwardaccept", policy=True)
    rc, out = m.curl("lan")
    assert rc == 0 and out.startswith("NODE: lan"), (rc, out)
    assert POLICY not in m.moved(1) and m.moved(0).get(RAW_C2, 0) >= 1
    assert m.run.returncode == 1, m.run.describe()
    assert failed_checks(m) == {ROUTER: "allow"}, m.run.describe()


def test_raw_and_docker_drop_gone_fails_direct_routing_dropped_by_policy(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "noraw-nodockerdrop", raw=True, docker=True)
    c2 = m.moved(0)
    assert m.dropped("c2") and c2.get(POLICY, 0) >= 1 and RAW_C2 not in c2, c2
    assert m.run.returncode == 1, m.run.describe()
    assert failed_checks(m) == {DIRECT: "deny, dropped by host filter FORWARD policy"}, m.run.describe()


def test_no_firewall_layer_left_lets_both_through(nsbox, kernel, tmp_path):
    m = run_mutant(nsbox, kernel, tmp_path, "nofirewall", raw=True, docker=True, policy=True)
    rc, out = m.curl("c2")
    assert rc == 0 and out.startswith("NODE: c2"), (rc, out)
    assert m.run.returncode == 1, m.run.describe()
    assert failed_checks(m) == {DIRECT: "allow", ROUTER: "allow"}, m.run.describe()
