"""dropped_by on an nftables rule (Docker 29's --firewall-backend=nftables), against the
real kernel: `nft list ruleset` in the live lab shows the counter the check read, and a
mutant whose raw rule no longer matches the uplink fails the check, naming the rule
that dropped the packet instead."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.runner import shipped_recipe_import

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("nft")]

CHECK = "tcp/80 internet->c2 (direct routing)"


def test_the_nft_rule_counts_the_dropped_probe(nsbox):
    r = nsbox.run("run", "bridge-mode", "--set", "docker=29-nftables", "--timeout", "0.3", "--format", "json",
                  "--then", "nft list table ip docker-bridges")
    assert r.returncode == 0, r.describe()
    assert r.checks()[CHECK]["observed"].startswith("deny, dropped by host nft ip docker-bridges raw-PREROUTING")
    # nft itself: the rule for c2's address counted packets, the one for c1 none
    c2 = re.search(r'ip daddr 172\.17\.0\.3 iifname != "docker0" counter packets (\d+)', r.stderr)
    c1 = re.search(r'ip daddr 172\.17\.0\.2 iifname != "docker0" counter packets (\d+)', r.stderr)
    assert c2 and int(c2.group(1)) > 0 and c1 and int(c1.group(1)) == 0, r.stderr


def test_a_raw_rule_that_no_longer_matches_fails_the_check(nsbox, tmp_path):
    (tmp_path / "m.py").write_text(shipped_recipe_import("bm", "bridge_mode.py") + textwrap.dedent(f'''
        @recipe("bridge-mode-nft-mutant")
        def build(lab):
            """bridge-mode on nftables, c2's raw rule watching the wrong interface."""
            bm.build(lab, 2, False, "29-nftables")
            fw = lab.host.firewall
            fw.nft = [t.replace('ip daddr 172.17.0.3 iifname != "docker0"', 'ip daddr 172.17.0.3 iifname "docker0"')
                      for t in fw.nft]
            check = next(c for c in lab.checks if c.name == "{CHECK}")
            lab.checks[lab.checks.index(check)] = type(check)(**{{**check.__dict__,
                "dropped_by": ("host", "nft", "ip docker-bridges raw-PREROUTING", "ip daddr 172.17.0.3")}})
    '''))
    r = nsbox.run("run", "bridge-mode-nft-mutant", "--recipes", str(tmp_path), "--timeout", "0.3",
                  "--settle", "0.5", "--format", "json")
    assert r.returncode == 1, r.describe()
    c = r.checks()[CHECK]
    assert not c["passed"] and "UNPUBLISHED PORT DROP" in c["observed"], c


def test_nft_dropped_by_is_validated_in_one_line(nsbox, tmp_path):
    (tmp_path / "v.py").write_text(shipped_recipe_import("bm", "bridge_mode.py") + textwrap.dedent('''
        @recipe("nft-bad-chain")
        def build(lab):
            """names a chain that is not there."""
            bm.build(lab, 2, False, "29-nftables")
            lab.expect("internet", "172.17.0.2", "tcp", 80, allow=False, name="x",
                       dropped_by=("host", "nft", "ip docker-bridges no-such-chain", "drop"))
    '''))
    r = nsbox.run("run", "nft-bad-chain", "--recipes", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.describe()
    assert "has no nftables chain ip docker-bridges no-such-chain" in r.stderr
