"""Any lab netlink accepts builds: 200 bridges in one node used to end in ENOBUFS
(64 link objects per batch overflowed the netlink socket's receive buffer)."""

import os
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip")]

RECIPE = """
    from nsbox.recipe import Param, recipe

    @recipe("many-bridges", params=[Param("bridges", 200, "bridges in one node", min=1, max=1000)])
    def build(lab, bridges):
        '''Many bridges in one node.'''
        lab.require("veth", "bridge")
        for i in range(bridges):
            lab.host.bridge(f"br{i}", f"10.{20 + i // 250}.{i % 250}.1/24")
        a = lab.node("a")
        lab.veth(a, "eth0", lab.host, "v0", b_master="br199")
        a.address("eth0", "10.20.199.2/24")
        lab.expect("a", "10.20.199.1", "icmp")
"""


def test_two_hundred_bridges_in_one_node(nsbox, tmp_path):
    (tmp_path / "br.py").write_text(textwrap.dedent(RECIPE))
    out = tmp_path / "links.json"
    run = nsbox.run("run", "many-bridges", "--recipes", str(tmp_path), "--format", "json",
                    "--then", f"ip -j -d link show type bridge > {out}")
    assert run.returncode == 0, run.describe()
    import json
    bridges = {link["ifname"] for link in json.loads(out.read_text())}
    assert bridges == {f"br{i}" for i in range(200)}


def test_a_thousand_containers_nft(nsbox, tmp_path):
    """1,000 containers = 1,000 raw DROP rules: one nf_tables batch is bigger than the
    send buffer a sandbox may have (EMSGSIZE); the rules must still all be there."""
    out = tmp_path / "raw.txt"
    run = nsbox.run("run", "bridge-mode", "--set", "containers=1000", "--iptables", "nft", "--format", "json",
                    "--then", f"iptables-nft-save -t raw > {out}", timeout=600)
    assert run.returncode == 0, run.describe()
    drops = [line for line in out.read_text().splitlines() if line.startswith("-A PREROUTING") and "DROP" in line]
    assert len(drops) == 1000
    assert drops[0].startswith("-A PREROUTING -d 172.17.0.2/32 ! -i docker0") and "172.17.3.233/32" in drops[-1]
