"""The native nftables firewall kind: node.nftables(ruleset) is loaded with `nft -f`
in the node, read back with `nft list ruleset` (nft's own view, not nsbox's), and
traffic shows it working: the ruleset drops tcp/7 to c2 and nothing else. A ruleset
nft refuses is one line and exit 2 before anything is built."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter", "nft")]

RULESET = """
table inet lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip daddr 10.77.2.2 tcp dport 7 counter drop
    }
}
"""
RECIPE = '''
from nsbox.recipe import Param, recipe

@recipe("nft-demo", params=[Param("ruleset", "", "nft -f text for the host (empty: RULESET)"),
                            Param("require", True, "the recipe declares lab.require('nftables')")])
def build(lab, ruleset, require):
    """c1 reaches c2 through the host; the host's nftables drops tcp/7 to c2."""
    lab.require("veth")
    if require:
        lab.require("nftables")
    c1, c2 = lab.node("c1"), lab.node("c2")
    lab.veth(c1, "eth0", lab.host, "v1")
    lab.veth(c2, "eth0", lab.host, "v2")
    c1.address("eth0", "10.77.1.2/24").route("10.77.2.0/24", via="10.77.1.1")
    c2.address("eth0", "10.77.2.2/24").route("10.77.1.0/24", via="10.77.2.1")
    lab.host.address("v1", "10.77.1.1/24").address("v2", "10.77.2.1/24")
    lab.host.sysctl("net.ipv4.ip_forward", 1)
    c2.serve("tcp", 7).serve("tcp", 8)
    lab.host.nftables(ruleset or RULESET)
    lab.expect("c1", "c2", "tcp", 7, allow=False)
    lab.expect("c1", "c2", "tcp", 8)
    lab.expect("c1", "c2", "icmp")
'''


@pytest.fixture
def recipes(tmp_path):
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "demo.py").write_text(f"RULESET = {RULESET!r}\n" + textwrap.dedent(RECIPE))
    return str(d)


def test_ruleset_is_loaded_and_drops_only_what_it_says(nsbox, recipes, tmp_path):
    out = tmp_path / "ruleset.json"
    run = nsbox.run("run", "nft-demo", "--recipes", recipes, "--format", "json",
                    "--then", f"nft -j list ruleset > {out}")
    assert run.returncode == 0, run.describe()
    assert run.checks()["tcp/7 c1->c2"]["observed"].startswith("deny")
    items = json.loads(out.read_text())["nftables"]
    tables = [i["table"] for i in items if "table" in i]
    assert [(t["family"], t["name"]) for t in tables] == [("inet", "lab")]
    rules = [i["rule"] for i in items if "rule" in i]
    assert len(rules) == 1 and rules[0]["chain"] == "forward"
    # nft's own counter: the denied probe's packets hit this rule
    counter = next(e["counter"] for e in rules[0]["expr"] if "counter" in e)
    assert counter["packets"] >= 1


def test_a_ruleset_nft_refuses_is_one_line_before_anything_is_built(nsbox, recipes):
    run = nsbox.run("run", "nft-demo", "--recipes", recipes, "--set", "ruleset=table inet lab { chain x { junk } }")
    assert run.returncode == 2, run.describe()
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nftables ruleset 1" in lines[0] and "Error" in lines[0], run.stderr


def test_using_nftables_without_requiring_it_is_a_usage_error(nsbox, recipes):
    run = nsbox.run("run", "nft-demo", "--recipes", recipes, "--set", "require=false")
    assert run.returncode == 2 and 'lab.require("nftables")' in run.stderr, run.describe()
