"""bridge-mode's deny check tests the firewall: mutants of the recipe, built for real.

`internet` routes 172.17.0.0/16 via the host (direct routing, what Docker 28's raw
DROP exists to stop), so only the rules keep it out. The deny check names the rule
that must drop the probe and reads the kernel's packet counters, so it fails when
that rule stops dropping -- even while a later layer still denies:

| mutant                                  | the named check observes                   |
|-----------------------------------------|--------------------------------------------|
| raw DROP neutralised                     | dropped by filter DOCKER's DROP            |
| ... and DOCKER's DROP removed            | dropped by filter FORWARD's policy          |
| ... and FORWARD's policy ACCEPT          | allow                                       |

For a container's address the raw DROP comes first (raw PREROUTING runs before
filter FORWARD), so in the real lab the two filter layers never see such a packet:
`test_the_filter_layers_are_shadowed` shows their counters stay at 0, read with
iptables-save -c, not with nsbox.
"""

from __future__ import annotations

import os
import re
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("iptables-save")]

CHECK = "tcp/80 internet->c2 (direct routing)"
MUTANT = """
    import importlib.util
    from nsbox.recipe import builtin_dirs, recipe

    _spec = importlib.util.spec_from_file_location("_bm", builtin_dirs()[0] / "bridge_mode.py")
    _bm = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_bm)

    @recipe("bridge-mode-mutant")
    def build(lab):
        '''bridge-mode with layers of its firewall taken away.'''
        _bm.build(lab, containers=2)
        host = lab.host
        if {raw}:
            # The check names the raw rule, so it stays; a RETURN before it means
            # it never sees c2's packets (builtin chain: RETURN = the policy ACCEPT).
            host.iptables("raw").chains["PREROUTING"].rules.insert(
                0, __import__("nsbox.model.rules", fromlist=["parse_rule"]).parse_rule("-d 172.17.0.3/32 -j RETURN"))
        if {docker}:
            rules = host.iptables("filter").chains["DOCKER"].rules
            rules[:] = [r for r in rules if r.jumps_to != "DROP"]
        if {policy}:
            host.iptables("filter").chains["FORWARD"].policy = None
"""


def run_mutant(nsbox, tmp_path, raw=False, docker=False, policy=False):
    (tmp_path / "mutant.py").write_text(textwrap.dedent(MUTANT.format(raw=raw, docker=docker, policy=policy)))
    return nsbox.run("run", "bridge-mode-mutant", "--recipes", str(tmp_path), "--format", "json",
                     "--timeout", "0.5")


@pytest.mark.parametrize("mutation, observed", [
    (dict(raw=True), "deny, dropped by host filter -A DOCKER ! -i docker0 -o docker0 -j DROP"),
    (dict(raw=True, docker=True), "deny, dropped by host filter FORWARD policy"),
    (dict(raw=True, docker=True, policy=True), "allow"),
], ids=["no-raw", "no-raw-no-docker-drop", "no-firewall"])
def test_each_layer_taken_away_fails_the_named_check(nsbox, tmp_path, mutation, observed):
    run = run_mutant(nsbox, tmp_path, **mutation)
    assert run.returncode == 1, run.describe()
    checks = run.checks()
    failed = sorted(n for n, c in checks.items() if not c["passed"])
    assert failed == [CHECK], run.describe()
    assert checks[CHECK]["observed"] == observed


def test_the_unmutated_recipe_passes_through_the_same_path(nsbox, tmp_path):
    run = run_mutant(nsbox, tmp_path)
    assert run.returncode == 0, run.describe()


def test_the_filter_layers_are_shadowed(nsbox, tmp_path):
    out = tmp_path / "save.txt"
    run = nsbox.run("run", "bridge-mode", "--format", "json", "--then", f"iptables-save -c > {out}")
    assert run.returncode == 0, run.describe()
    text = out.read_text()
    raw = re.search(r"^\[(\d+):\d+\] -A PREROUTING -d 172\.17\.0\.3/32 ! -i docker0 -j DROP$", text, re.M)
    docker = re.search(r"^\[(\d+):\d+\] -A DOCKER ! -i docker0 -o docker0 -j DROP$", text, re.M)
    forward = re.search(r"^:FORWARD DROP \[(\d+):\d+\]$", text, re.M)
    assert raw and docker and forward, text
    assert int(raw.group(1)) >= 1          # the direct-routing probe, dropped in raw
    assert int(docker.group(1)) == 0       # never reached for a container's address
    assert int(forward.group(1)) == 0
