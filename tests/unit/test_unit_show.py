"""`nsbox show`: text, Mermaid and dot pictures of a lab, read back by parsers
that are not nsbox's (a Mermaid flowchart grammar subset written here from the
Mermaid docs; Graphviz's own `dot`)."""

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from nsbox import recipe
from nsbox.plan.show import render
from tests.support.mermaid import parse_mermaid


@pytest.fixture(scope="module")
def lab():
    return recipe.get("bridge-mode").build({"containers": "3"})


def test_mermaid_parses_and_matches_the_lab(lab):
    groups, nodes, edges = parse_mermaid(render(lab, "mermaid"))
    assert len(groups) == len(lab.nodes)            # one box per namespace
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)   # no edge to an undeclared node
    assert len(edges) == len(lab.veths) + 3 + 1     # veth pairs + 3 docker0 ports + the NAT point
    assert ("host_veth5ef6e37", "host_docker0") in edges
    assert ("host_nat_0", "host_eth0") in edges      # MASQUERADE drawn on the uplink
    assert 'host_docker0[["docker0<br/>172.17.0.1/16"]]' in render(lab, "mermaid")
    assert 'subgraph ns_host["host (NAT)"]' in render(lab, "mermaid")


def test_text_names_nodes_bridges_addresses_and_nat(lab):
    out = render(lab, "text")
    assert "node host  [NAT]" in out and "node internet\n" in out
    assert "  docker0 (bridge)  172.17.0.1/16" in out
    assert "  eth0 (veth) <-> host:veth5ef6e37  172.17.0.2/16" in out


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz's dot (apt install graphviz)")
def test_dot_is_accepted_by_graphviz(lab):
    done = subprocess.run(["dot", "-Tsvg"], input=render(lab, "dot"), capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr
    svg = ET.fromstring(done.stdout)
    ns = {"s": "http://www.w3.org/2000/svg"}
    clusters = [g.find("s:title", ns).text for g in svg.iter(f"{{{ns['s']}}}g") if g.get("class") == "cluster"]
    assert sorted(clusters) == sorted(f"cluster_{n}" for n in lab.nodes)
    edges = [g for g in svg.iter(f"{{{ns['s']}}}g") if g.get("class") == "edge"]
    assert len(edges) == len(lab.veths) + 3 + 1


def test_macvlan_children_point_to_their_parent():
    from nsbox.model import Lab

    lab = Lab("t")
    lan = lab.node("lan")
    lan.bridge("br0")
    lab.veth(lab.host, "eth0", lan, "p0", b_master="br0")
    lab.macvlan(lab.node("c1"), "eth0", parent=(lab.host, "eth0"))
    assert "  eth0 (macvlan) on host:eth0" in render(lab, "text")
    groups, nodes, edges = parse_mermaid(render(lab, "mermaid"))
    assert ("c1_eth0", "host_eth0") in edges
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=render(lab, "dot"), capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
