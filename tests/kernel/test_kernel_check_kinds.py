"""counted_by, deny kinds, several seen_from addresses and ICMP conntrack, against the real
kernel (tests/data/check_kinds/: a router masquerading a's traffic, its FORWARD chain
turning b's ports away in every way a denial shows).

Observers independent of nsbox: `iptables-save -c` in the router (the named rules' own
packet counters), `conntrack -L -p icmp` (the echo's entry, its id the one nsbox matched).
Mutations: an SNAT rule ahead of the MASQUERADE (the server still sees the same source, so
only the counter tells) fails the counted_by check naming the SNAT rule; a REJECT that
answers port unreachable instead of admin prohibited fails deny="filtered" as "refused"."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save", "conntrack")]

RECIPES = str(DATA / "check_kinds")
MASQ_CHECK = "tcp/7 a->b masqueraded (counted by MASQUERADE)"


def _run(nsbox, tmp_path, *args: str):
    then = (f"iptables-save -c > {tmp_path}/save.txt; conntrack -L -p icmp -n > {tmp_path}/ct.txt 2>/dev/null")
    return nsbox.run("run", "check-kinds", "--recipes", RECIPES, "--format", "json", "--timeout", "0.5",
                     "--settle", "0.3", *args, "--then", then, timeout=120)


def _counter(save: str, rule: str) -> int:
    m = re.search(r"^\[(\d+):\d+\] -A " + re.escape(rule) + "$", save, re.M)
    assert m, (rule, save)
    return int(m.group(1))


def test_every_kind_passes_and_the_kernel_agrees(nsbox, tmp_path):
    r = _run(nsbox, tmp_path)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert all(c["passed"] for c in checks.values()), checks
    save = (tmp_path / "save.txt").read_text()
    # the rules the counted_by checks name counted, in the kernel's own counters
    assert _counter(save, "POSTROUTING -s 10.90.1.0/24 -o hb -j MASQUERADE") >= 1
    assert _counter(save, "FORWARD -s 10.90.1.0/24 -p udp -m udp --dport 5 -j ACCEPT") >= 1
    # each REJECT that a deny kind names turned a probe away
    for rule in ("FORWARD -p tcp -m tcp --dport 8 -j REJECT --reject-with tcp-reset",
                 "FORWARD -p tcp -m tcp --dport 10 -j REJECT --reject-with icmp-admin-prohibited",
                 "FORWARD -p udp -m udp --dport 11 -j REJECT --reject-with icmp-admin-prohibited",
                 "FORWARD -p tcp -m tcp --dport 12 -j REJECT --reject-with icmp-host-unreachable",
                 "FORWARD -p udp -m udp --dport 14 -j REJECT --reject-with icmp-port-unreachable",
                 "FORWARD -d 10.90.3.2/32 -p icmp -j REJECT --reject-with icmp-net-prohibited"):
        assert _counter(save, rule) >= 1, rule
    assert checks["tcp/10 a->b filtered (admin prohibited)"]["observed"] == "deny (filtered)"
    assert "ICMP type 3 code 13" in checks["udp/11 a->b filtered (admin prohibited)"]["detail"]
    assert checks["tcp/12 a->b unreachable (host unreachable)"]["observed"] == "deny (unreachable)"
    assert checks["udp/5 a->b (counted by ACCEPT, seen from one of two)"]["seen"]["ip"] == "10.90.2.1"
    # conntrack -L -p icmp prints the very entry the check matched (same id), masqueraded
    ct = checks["conntrack host: icmp a->b"]["detail"]
    ident = re.search(r"type=8 code=0 id=(\d+)", ct).group(1)
    line = next(ln for ln in (tmp_path / "ct.txt").read_text().splitlines() if f"id={ident} " in ln)
    assert "src=10.90.1.2 dst=10.90.2.2 type=8 code=0" in line and "src=10.90.2.2 dst=10.90.2.1 type=0" in line, line


def test_a_rule_ahead_that_takes_the_packet_fails_counted_by(nsbox, tmp_path):
    r = _run(nsbox, tmp_path, "--set", "mutant=1")
    assert r.returncode == 1, r.describe()
    checks = r.checks()
    c = checks[MASQ_CHECK]
    assert not c["passed"], c
    assert c["seen"]["ip"] == "10.90.2.1"  # seen_from alone cannot tell: same source address
    assert "not counted by it: counted by" in c["observed"] and "-j SNAT --to-source 10.90.2.1" in c["observed"], c
    save = (tmp_path / "save.txt").read_text()
    assert _counter(save, "POSTROUTING -s 10.90.1.0/24 -o hb -j MASQUERADE") == 0
    assert _counter(save, "POSTROUTING -s 10.90.1.0/24 -o hb -j SNAT --to-source 10.90.2.1") >= 1
    assert [n for n, x in checks.items() if not x["passed"]] == [MASQ_CHECK]


def test_a_port_unreachable_fails_deny_filtered(nsbox, tmp_path):
    r = _run(nsbox, tmp_path, "--set", "mutant=2")
    assert r.returncode == 1, r.describe()
    c = r.checks()["tcp/10 a->b filtered (admin prohibited)"]
    assert not c["passed"] and c["observed"] == "deny (refused)", c
    assert "ICMP type 3 code 3" in c["detail"], c
    assert _counter((tmp_path / "save.txt").read_text(),
                    "FORWARD -p tcp -m tcp --dport 10 -j REJECT --reject-with icmp-port-unreachable") >= 1


NFT_MUTANT = '''
import dataclasses

{head}

@recipe("bridge-mode-nft-counted")
def build(lab, ahead=0):
    """bridge-mode on nftables; c1->internet counted_by Docker's nft MASQUERADE rule."""
    bm.build(lab, 2, False, "29-nftables")
    fw = lab.host.firewall
    if {ahead}:  # an accept ahead of the masquerade in its chain: the packet leaves unmasqueraded
        fw.nft = [t.replace('oifname != "docker0" ip saddr 172.17.0.0/16',
                            'ip daddr 203.0.113.0/24 counter accept\\n\\t\\toifname != "docker0" ip saddr 172.17.0.0/16', 1)
                  for t in fw.nft]
    i, check = next((i, c) for i, c in enumerate(lab.checks) if c.name == "http c1->internet (NAT)")
    lab.checks[i] = dataclasses.replace(check, counted_by=(
        "host", "nft", "ip docker-bridges nat-postrouting-out__docker0", 'masquerade comment "MASQUERADE"'))
'''


@pytest.mark.tools("nft")
@pytest.mark.parametrize("ahead", [0, 1], ids=["counted", "accept-ahead"])
def test_counted_by_an_nft_masquerade_rule(nsbox, tmp_path, ahead):
    from tests.support.runner import shipped_recipe_import

    (tmp_path / "n.py").write_text(NFT_MUTANT.format(head=shipped_recipe_import("bm", "bridge_mode.py"),
                                                     ahead=ahead))
    r = nsbox.run("run", "bridge-mode-nft-counted", "--recipes", str(tmp_path), "--format", "json",
                  "--timeout", "0.5", "--settle", "0.3", "--then",
                  f"nft list chain ip docker-bridges nat-postrouting-out__docker0 > {tmp_path}/chain.txt", timeout=120)
    c = r.checks()["http c1->internet (NAT)"]
    chain = (tmp_path / "chain.txt").read_text()
    masq = int(re.search(r"counter packets (\d+) bytes \d+ masquerade", chain).group(1))
    if not ahead:
        assert r.returncode == 0 and c["passed"], r.describe()
        assert c["observed"].endswith('counted by host nft ip docker-bridges nat-postrouting-out__docker0: '
                                      'masquerade comment "MASQUERADE"'), c
        assert masq >= 1, chain
    else:
        assert r.returncode == 1 and not c["passed"], r.describe()
        assert "ip daddr 203.0.113.0/24 accept" in c["observed"], c
        assert masq == 0, chain
