"""Rules go where the distribution's `iptables` looks (nft on Debian 12), or where
--iptables says; either way bridge-mode's rules read like Docker 29's and its
dropped_by check (which reads counters from the same backend) passes."""

import os
import subprocess

import pytest

from tests.support.golden import docker29_rules
from tests.support.saves import tables_in_order

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("iptables", "iptables-nft-save", "iptables-legacy-save",
                                "ip6tables-nft-save", "ip6tables-legacy-save")]


def system_flavour() -> str:
    out = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout
    return "nft" if "nf_tables" in out else "legacy"


@pytest.mark.parametrize("choice", ["auto", "nft", "legacy"])
def test_rules_land_in_the_chosen_backend(nsbox, tmp_path, choice):
    expect = system_flavour() if choice == "auto" else choice
    other = "legacy" if expect == "nft" else "nft"
    then = (f"iptables-{expect}-save > {tmp_path}/chosen; iptables-{other}-save > {tmp_path}/other; "
            f"iptables -S > {tmp_path}/plain; ip6tables-{expect}-save > {tmp_path}/chosen6; "
            f"ip6tables-{other}-save > {tmp_path}/other6; ip6tables -t nat -S > {tmp_path}/plain6")
    run = nsbox.run("run", "bridge-mode", "--iptables", choice, "--format", "json", "--then", then)
    assert run.returncode == 0, run.describe()
    saved = tables_in_order((tmp_path / "chosen").read_text())
    golden = docker29_rules(2)
    for table in ("raw", "filter", "nat"):
        assert saved[table] == golden[table], table
    # The ip6tables skeleton dockerd writes on an IPv4-only default bridge, from moby's goldens.
    saved6 = tables_in_order((tmp_path / "chosen6").read_text())
    golden6 = docker29_rules(2, family=6)
    for table in ("filter", "nat"):
        assert saved6[table] == golden6[table], table
    assert "-A" not in (tmp_path / "other").read_text(), "rules leaked into the other backend"
    assert "-A" not in (tmp_path / "other6").read_text(), "ip6 rules leaked into the other backend"
    if expect == system_flavour():
        assert "-N DOCKER-FORWARD" in (tmp_path / "plain").read_text(), "plain `iptables -S` shows no rules"
        assert "-A OUTPUT ! -d ::1/128" in (tmp_path / "plain6").read_text(), "plain `ip6tables -t nat -S` shows no rules"
    checks = run.checks()
    assert checks["tcp/80 internet->c2 (direct routing)"]["observed"].startswith("deny, dropped by host raw")


def test_bad_flavour_is_a_usage_error(nsbox):
    run = nsbox.run("run", "bridge-mode", "--iptables", "ebtables")
    assert run.returncode == 2 and "--iptables" in run.stderr
