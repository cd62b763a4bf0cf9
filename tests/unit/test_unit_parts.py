"""nsbox/live/parts.py's model side: which nodes a part holds, which wires leave it (they
become underlay interfaces), which checks it runs whole, reach-only or leaves to others."""

from __future__ import annotations

import pytest

from nsbox import cli
from nsbox.errors import UsageError
from nsbox.live import parts


@pytest.fixture(scope="module")
def lab():
    return cli.load_labs(("pod-to-pod",), {"cni": "vxlan"}, ())[0]


def test_a_node_brings_its_machine_and_its_wire_becomes_an_underlay(lab):
    out, part = parts.split_validated(lab, ("node1",))
    assert set(out.nodes) == {"host", "node1", "n1-p1", "n1-p2"}
    assert part.crossings == [parts.Crossing("node1", "eth0", "k8s-lan")]
    assert out.nodes["node1"].interfaces["eth0"].kind == parts.UNDERLAY
    assert all("k8s-lan" not in (v.a_node, v.b_node) for v in out.veths)
    assert [l.name for l in out.links] == ["flannel.1"]  # the VXLAN device stays, on eth0


def test_checks_whole_reach_only_or_left(lab):
    out, part = parts.split_validated(lab, ("node1",))
    names = {c.name: c for c in out.checks}
    assert "tcp/7 n1-p1->n1-p2 (same node, no NAT)" in names and names[
        "tcp/7 n1-p1->n1-p2 (same node, no NAT)"].seen_from == "10.244.1.2"
    cross = names["tcp/7 n1-p1->n2-p1 (across nodes, no NAT)"]
    assert cross.dst == "10.244.2.2" and cross.seen_from is None  # the far server is elsewhere
    assert any(v.ip == "10.244.2.2" for v in out.virtuals)
    assert "tcp/7 n2-p1->n1-p1 (across nodes, no NAT)" in part.skipped
    # its probe goes to outside, another part: reach only, the counter on node1 still judged
    assert "http n1-p1->outside (masqueraded to node1)" in part.cross
    assert all(len("nsbox: " + line) <= 80 for line in part.summary())


@pytest.mark.parametrize("names, says", [(("node9",), "--part node9: no machine"), ((), "--part needs"),
                                         (("host",), "--part host: no machine")])
def test_unknown_part_is_a_usage_error(lab, names, says):
    with pytest.raises(UsageError, match=says):
        parts.split(lab, names)


def test_a_wire_out_needs_an_underlay(lab):
    _out, part = parts.split(lab, ("node1",))
    with pytest.raises(UsageError, match="through node1/eth0: give --underlay"):
        parts.parse_underlays((), part.crossings)


def test_holder_link_argument(lab):
    assert parts.parse_links(("node1:eth0=nsbu1a0",)) == {("node1", "eth0"): "nsbu1a0"}
    with pytest.raises(UsageError):
        parts.parse_links(("node1:eth0=eth1",))  # only a child nsbox made, never the host's NIC
