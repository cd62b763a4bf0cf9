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
