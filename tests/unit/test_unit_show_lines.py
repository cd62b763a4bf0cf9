"""Lines in every recipe's picture join only what the model joins, and cross no box they
do not belong to (issue 18: in bridge-mode's Mermaid the host -> internet line ran
through the `lan` box).

- Each line between two namespaces' boxes stands for a link of the model: a veth pair
  between exactly those two interfaces, a macvlan/ipvlan/vlan child and its parent, two
  VXLAN ends of one VNI, or a port forward to the interface that holds its target
  (read from the model's rules by tests/unit/test_unit_show_facts.expected, not nsbox's facts).
- Mermaid: every line is written outside every subgraph (in Mermaid a line written inside
  a subgraph pulls its nodes into that box), and a veth to a node's way out (its default
  gateway) is written gateway first, which is what keeps dagre from running the host ->
  internet line through the LAN box (nsbox/plan/show.py _gateway_first).
- dot: Graphviz lays every recipe out (`dot -Tjson`) and no line's curve enters a box
  that holds neither of its ends.
"""

from __future__ import annotations


import pytest

from nsbox import recipe
from nsbox.plan.show import render
from tests.support.mermaid import EDGE, parse_mermaid
from tests.unit.test_unit_show_facts import CASES, _bezier, _id, _owner, dot_json, expected, needs_dot

IDS = [f"{n}{''.join('-' + v for v in p.values())}" for n, p in CASES]


def _box_of(lab) -> dict[str, str]:
    """Drawn node id -> the namespace whose box holds it (interfaces and notes)."""
    out = {}
    for n, node in lab.nodes.items():
        for i in node.interfaces:
            out[_id(n, i)] = n
    return out


def _allowed(lab) -> set[frozenset[str]]:
    """Pairs of drawn ids the model links across namespaces."""
    ok = {frozenset((_id(p.a_node, p.a_name), _id(p.b_node, p.b_name))) for p in lab.veths}
    for k in lab.links:
        if k.parent:
            ok.add(frozenset((_id(k.node, k.name), _id(*k.parent))))
    ends = [(k, dict(k.options).get("vni")) for k in lab.links if k.kind == "vxlan"]
    for i, (a, va) in enumerate(ends):
        for b, vb in ends[i + 1:]:
            if va is not None and va == vb:
                ok.add(frozenset((_id(a.node, a.name), _id(b.node, b.name))))
    return ok


def _judge(lab, edges: list[tuple[str, str]]) -> list[str]:
    box = _box_of(lab)
    allowed = _allowed(lab)
    fwd_targets = {n: {iface for _t, iface in f if iface} for n, f in expected(lab)["fwd"].items()}
    bad = []
    for a, b in edges:
        na, nb = box.get(a), box.get(b)
        if na is None or nb is None or na == nb:
            continue  # a note inside a box, or a line within one namespace
        if frozenset((a, b)) in allowed:
            continue
        src = next((n for n in lab.nodes if a.startswith(_id(n, "fwd"))), None)
        if src is not None and b in fwd_targets.get(src, ()):
            continue
        bad.append(f"{a} -- {b}: the model links no {na} and {nb} this way")
    return bad


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_mermaid_lines_join_only_what_the_model_links(name, params):
    lab = recipe.get(name).build(params)
    text = render(lab, "mermaid")
    groups, _nodes, edges = parse_mermaid(text)
    box = _box_of(lab)
    for g, members in groups.items():  # notes: their box is the subgraph that declares them
        for m in members:
            box.setdefault(m, g[3:])
    assert not _judge(lab, edges)
    # every line outside every subgraph: inside one, Mermaid would move its ends into it
    depth = 0
    for line in (x.strip() for x in text.splitlines()):
        depth += line.startswith("subgraph ") - (line == "end")
        assert not (depth and EDGE.match(line)), f"line written inside a subgraph: {line}"


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_mermaid_draws_the_way_out_first(name, params):
    """A veth between a node and its default gateway's node is written gateway -> node."""
    lab = recipe.get(name).build(params)
    _groups, _nodes, edges = parse_mermaid(render(lab, "mermaid"))
    for p in lab.veths:
        for me, my_if, peer, peer_if in ((p.a_node, p.a_name, p.b_node, p.b_name),
                                         (p.b_node, p.b_name, p.a_node, p.a_name)):
            gw = next((r.via for r in lab.nodes[me].routes if r.dst == "default" and r.via), None)
            if gw and _owner(lab, gw)[0] == peer and not any(
                    r.dst == "default" and r.via and _owner(lab, r.via)[0] == me for r in lab.nodes[peer].routes):
                assert (_id(peer, peer_if), _id(me, my_if)) in edges, (me, peer)


@needs_dot
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_dot_lines_join_only_what_the_model_links_and_cross_no_other_box(name, params):
    lab = recipe.get(name).build(params)
    g = dot_json(lab)
    objs = g["objects"]
    nodes = {o["_gvid"]: o for o in objs if not o["name"].startswith("cluster_")}
    edges = [(nodes[e["tail"]]["name"], nodes[e["head"]]["name"]) for e in g.get("edges", [])]
    assert not _judge(lab, edges)
    boxes = {}
    for o in objs:
        if o["name"].startswith("cluster_") and "bb" in o:  # a box with lo alone is not drawn
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
            boxes[o["name"]] = ((x0, y0, x1, y1), {nodes[i]["name"] for i in o.get("nodes", [])})
    for e in g.get("edges", []):
        ends = {nodes[e["tail"]]["name"], nodes[e["head"]]["name"]}
        pts = [p for op in e["_draw_"] if op["op"] == "b" for p in op["points"]]
        for cname, ((x0, y0, x1, y1), members) in boxes.items():
            if members & ends:
                continue
            inside = [p for p in _bezier(pts) if x0 + 1 < p[0] < x1 - 1 and y0 + 1 < p[1] < y1 - 1]
            assert not inside, f"{' -- '.join(sorted(ends))} crosses {cname}"


def test_an_unlinked_line_is_caught():
    """Mutation: a line the model does not have (c1's eth0 to the lan's) is reported."""
    lab = recipe.get("bridge-mode").build({})
    assert _judge(lab, [("c1_eth0", "lan_eth0")])
    assert not _judge(lab, [("host_eth1", "lan_eth0")])
