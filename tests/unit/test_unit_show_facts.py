"""Every shipped recipe's picture against its model: each node (box), interface,
source-NAT point, port forward (DNAT rule or docker-proxy), container sharing a
netns, virtual address and VXLAN tunnel appears, and nothing the model lacks.

The expectations are read from the model here (its iptables rules, proxies,
containers, links), not from nsbox/plan/facts.py; the dot picture is read back by
Graphviz itself (`dot -Tjson`, with the layout), the Mermaid text by the grammar
check in tests/unit/test_unit_show.py."""

from __future__ import annotations

import ipaddress
import json
import re
import os
import shutil
import subprocess
import sys

import pytest

from nsbox import recipe
from nsbox.plan.show import render
from tests.support.mermaid import parse_mermaid
from tests.support.paths import REPO

ROOT = REPO
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz's dot (apt install graphviz)")

CASES = [(name, {}) for name in sorted(recipe.discover())] + [
    ("pod-to-pod", {"cni": "vxlan"}), ("hostport", {"cni": "vxlan"}), ("user-networks", {"docker0": "True"}),
    ("port-publish", {"proxy": "False"}), ("gateway-modes", {"mode": "routed"}),
]


def _id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def _loopback(v) -> bool:
    try:
        return v is not None and not v.invert and ipaddress.ip_network(v.value, strict=False).is_loopback
    except ValueError:
        return False


def _owner(lab, ip: str):
    for node in lab.nodes.values():
        for a in node.addresses:
            if ipaddress.ip_address(a.ip) == ipaddress.ip_address(ip):
                return node.name, a.iface
    return None, None


def expected(lab) -> dict:
    """What the model says the picture must show, per node."""
    snat: dict[str, set[str]] = {}
    fwd: dict[str, set[tuple[str, str | None]]] = {}   # node -> {(target text, target iface id)}
    for node in lab.nodes.values():
        nat = node.firewall.tables.get("nat")
        for chain in (nat.chains.values() if nat else ()):
            for r in chain.rules:
                if r.jumps_to in ("MASQUERADE", "SNAT") and not _loopback(r.src):
                    snat.setdefault(node.name, set()).add(r.render().split(" -j ", 1)[1])
                if r.jumps_to == "DNAT":
                    to = dict((o.name, o.value) for o in r.target.options)["to-destination"]
                    ip, port = to.rsplit(":", 1)
                    owner, iface = _owner(lab, ip)
                    fwd.setdefault(node.name, set()).add((f"-> {owner or ip}:{port} (DNAT)",
                                                          _id(owner, iface) if owner else None))
        for p in node.proxies:
            owner, iface = _owner(lab, p.container_ip)
            fwd.setdefault(node.name, set()).add((f"-> {owner or p.container_ip}:{p.container_port} ({p.name})",
                                                  _id(owner, iface) if owner else None))
    return {"snat": snat, "fwd": fwd, "shared": {c.name: c.node for c in lab.containers.values()},
            "virtual": [v.ip for v in lab.virtuals],
            "vxlan": [(k.node, k.name, dict(k.options).get("dev")) for k in lab.links if k.kind == "vxlan"]}


def dot_json(lab) -> dict:
    done = subprocess.run(["dot", "-Tjson"], input=render(lab, "dot"), capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return json.loads(done.stdout)


@needs_dot
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{''.join('-' + v for v in p.values())}" for n, p in CASES])
def test_dot_picture_matches_the_model(name, params):
    lab = recipe.get(name).build(params)
    want = expected(lab)
    g = dot_json(lab)
    objs = g["objects"]
    clusters = {o["name"]: o for o in objs if o["name"].startswith("cluster_")}
    nodes = {o["_gvid"]: o for o in objs if not o["name"].startswith("cluster_")}
    by_name = {o["name"]: o for o in nodes.values()}
    # one box per namespace, labelled with its name, "(NAT)" exactly where sources are rewritten
    assert sorted(clusters) == sorted(f"cluster_{_id(n)}" for n in lab.nodes)
    for n in lab.nodes:
        label = clusters[f"cluster_{_id(n)}"]["label"]
        assert label.startswith(n)
        assert ("(NAT)" in label) == (n in want["snat"]), (n, label)
    members = {n: {nodes[i]["name"] for i in clusters[f"cluster_{_id(n)}"].get("nodes", [])} for n in lab.nodes}
    # every interface but lo, in its node's box
    for node in lab.nodes.values():
        for iface in node.interfaces:
            if iface != "lo":
                assert _id(node.name, iface) in members[node.name], (node.name, iface)
    edges = {(nodes[e["tail"]]["name"], nodes[e["head"]]["name"]): e.get("label", "") for e in g.get("edges", [])}
    notes = {o["name"]: o["label"] for o in nodes.values() if o.get("shape") == "note"}
    accounted: set[str] = set()
    for n, targets in want["snat"].items():
        mine = {k: v for k, v in notes.items() if k in members[n] and v.startswith("NAT ")}
        for t in targets:
            hit = [k for k, v in mine.items() if v.startswith(f"NAT {t}")]
            assert hit, (n, t, mine)
            accounted.update(hit)
    for n, fwds in want["fwd"].items():
        for text, iface in fwds:
            hit = [k for k in members[n] if text in notes.get(k, "")]
            assert hit, (n, text, [notes.get(k) for k in members[n]])
            accounted.update(hit)
            if iface:   # the forward points at the interface that holds the target address
                assert any((k, iface) in edges for k in hit), (n, text, iface)
    for c, n in want["shared"].items():
        hit = [k for k in members[n] if notes.get(k, "").startswith(f"container {c} shares {n}")]
        assert hit, (c, n)
        accounted.update(hit)
    for ip in want["virtual"]:
        hit = [k for k, v in notes.items() if ip in v and not v.startswith("NAT ") and " -> " not in v]
        assert hit, ip
        accounted.update(hit)
    for node, iface, dev in want["vxlan"]:
        assert dev is not None and edges.get((_id(node, iface), _id(node, dev)), "").startswith("vxlan"), \
            (node, iface, dev)
    # nothing the model lacks: every drawn node is an interface of the model or a note accounted for
    ifaces = {_id(n.name, i) for n in lab.nodes.values() for i in n.interfaces}
    assert set(by_name) - ifaces == set(notes) and set(notes) == accounted, set(notes) - accounted


def _bezier(points, steps: int = 12):
    for i in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[i:i + 4]
        for s in range(steps + 1):
            t = s / steps
            yield tuple((1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t ** 2 * c + t ** 3 * d
                        for a, b, c, d in zip(p0, p1, p2, p3))


@needs_dot
@pytest.mark.parametrize("name", ["bridge-mode", "port-publish", "container-mode", "macvlan-mode", "none-mode"])
def test_dot_lines_do_not_cross_unrelated_boxes(name):
    """A line between two namespaces runs through their boxes only (bridge-mode: the
    host -> internet veth must not cut through the `lan` box)."""
    lab = recipe.get(name).build({})
    g = dot_json(lab)
    objs = g["objects"]
    nodes = {o["_gvid"]: o for o in objs if not o["name"].startswith("cluster_")}
    boxes = {}
    for o in objs:
        if o["name"].startswith("cluster_") and "bb" in o:   # an empty box (lo alone) is not drawn
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
            boxes[o["name"]] = ((x0, y0, x1, y1), {nodes[i]["name"] for i in o.get("nodes", [])})
    for e in g.get("edges", []):
        ends = {nodes[e["tail"]]["name"], nodes[e["head"]]["name"]}
        pts = [p for op in e["_draw_"] if op["op"] == "b" for p in op["points"]]
        for cname, ((x0, y0, x1, y1), members) in boxes.items():
            if members & ends:
                continue
            inside = [p for p in _bezier(pts) if x0 + 1 < p[0] < x1 - 1 and y0 + 1 < p[1] < y1 - 1]
            assert not inside, f"{'--'.join(sorted(ends))} crosses {cname}"


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{''.join('-' + v for v in p.values())}" for n, p in CASES])
def test_mermaid_picture_matches_the_model(name, params):
    lab = recipe.get(name).build(params)
    want = expected(lab)
    text = render(lab, "mermaid")
    groups, nodes, edges = parse_mermaid(text)
    assert sorted(groups) == sorted(_id("ns", n) for n in lab.nodes)
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)
    for n in lab.nodes:
        head = next(line for line in text.splitlines() if line.strip().startswith(f"subgraph {_id('ns', n)}["))
        assert ("(NAT)" in head) == (n in want["snat"]), head
    for c, n in want["shared"].items():   # container mode: c2 drawn in c1's box
        assert _id(n, "ctr", c) in groups[_id("ns", n)], (c, n)
    labels = {m.group(1): re.sub(r"#(\d+);", lambda e: chr(int(e.group(1))), m.group(2))
              for m in re.finditer(r'^\s*([A-Za-z0-9_]+)\["([^"]*)"\]$', text, re.M)}
    for n, fwds in want["fwd"].items():
        for want_text, iface in fwds:
            hit = [k for k in groups[_id("ns", n)] if k.startswith(_id(n, "fwd")) and want_text in labels[k]]
            assert hit, (n, want_text)
            if iface:
                assert any((k, iface) in edges for k in hit), (n, want_text, iface)
    for node, iface, dev in want["vxlan"]:
        assert (_id(node, iface), _id(node, dev)) in edges


def test_labels_that_teach():
    """The issue's examples, word for word."""
    def out(name, fmt="text", **params):
        return render(recipe.get(name).build(params), fmt)
    assert "forward host:8080/tcp -> c1:80 (DNAT)" in out("port-publish")
    assert "c1_ctr_c2[\"container c2 shares c1#39;s netns\"]" in out("container-mode", "mermaid")
    unet = out("user-networks", "mermaid")
    assert 'subgraph ns_i1["i1 (no default route)"]' in unet and 'subgraph ns_a1["a1"]' in unet
    assert "NAT: MASQUERADE from 172.17.0.0/16 out eth0" in out("bridge-mode")
    assert "tunnel flannel.1: vxlan 1 over eth0 from 192.168.70.11" in out("pod-to-pod", cni="vxlan")
    _, _, edges = parse_mermaid(out("pod-to-pod", "mermaid", cni="vxlan"))
    assert ("node1_flannel_1", "node1_eth0") in edges          # the tunnel over its underlay
    assert ("node1_flannel_1", "node2_flannel_1") in edges     # and the overlay between its ends


def test_a_service_shows_each_endpoint_from_each_entry():
    """kube-proxy's shape: ClusterIP and NodePort rules lead to one Service chain that
    picks one of two endpoint chains, each a DNAT to a pod: four forwards, each with a
    line to its pod's interface."""
    from nsbox.model import Lab

    lab = Lab("svc")
    node = lab.node("node1")
    for i, pod in enumerate(("p1", "p2"), 1):
        p = lab.node(pod)
        lab.veth(p, "eth0", node, f"veth{i}")
        p.address("eth0", f"10.244.1.{i + 1}/24")
    nat = node.iptables("nat")
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXT-A", "KUBE-SVC-A", "KUBE-SEP-1", "KUBE-SEP-2"):
        nat.new_chain(c)
    nat.append("PREROUTING", "-j KUBE-SERVICES")
    nat.append("KUBE-SERVICES", "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A")
    nat.append("KUBE-SERVICES", "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    nat.append("KUBE-NODEPORTS", "-p tcp -m tcp --dport 30080 -j KUBE-EXT-A")
    nat.append("KUBE-EXT-A", "-j KUBE-SVC-A")
    nat.append("KUBE-SVC-A", "-m statistic --mode random --probability 0.5 -j KUBE-SEP-1")
    nat.append("KUBE-SVC-A", "-j KUBE-SEP-2")
    nat.append("KUBE-SEP-1", "-p tcp -m tcp -j DNAT --to-destination 10.244.1.2:8080")
    nat.append("KUBE-SEP-2", "-p tcp -m tcp -j DNAT --to-destination 10.244.1.3:8080")
    lab.virtual("10.96.0.10", name="service web")
    out = render(lab, "text")
    for line in ("forward 10.96.0.10:80/tcp -> p1:8080 (DNAT)", "forward 10.96.0.10:80/tcp -> p2:8080 (DNAT)",
                 "forward node1:30080/tcp -> p1:8080 (DNAT)", "forward node1:30080/tcp -> p2:8080 (DNAT)"):
        assert line in out, out
    assert out.count("  forward ") == 4, out
    groups, nodes, edges = parse_mermaid(render(lab, "mermaid"))
    assert sum(1 for a, b in edges if a.startswith("node1_fwd_") and b == "p1_eth0") == 2
    assert sum(1 for a, b in edges if a.startswith("node1_fwd_") and b == "p2_eth0") == 2
    assert "virt_0" in nodes   # the ClusterIP itself, drawn


@needs_dot
def test_show_writes_svg_and_png_through_dot(tmp_path):
    import xml.etree.ElementTree as ET

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    svg, png = tmp_path / "lab.svg", tmp_path / "lab.png"
    for fmt, path in (("svg", svg), ("png", png)):
        done = subprocess.run([sys.executable, "-m", "nsbox", "show", "port-publish", "--format", fmt,
                               "--output", str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    titles = [t.text for t in ET.parse(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "host:8080/tcp -> c1:80 (DNAT)" in titles
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    done = subprocess.run([sys.executable, "-m", "nsbox", "show", "port-publish", "--format", "png"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--output FILE" in done.stderr


def test_show_refuses_an_image_cleanly_without_dot(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from nsbox import cli
    from nsbox.plan import image

    monkeypatch.setattr(image.tools, "find", lambda name: None)
    out = tmp_path / "x.svg"
    res = CliRunner().invoke(cli.main, ["show", "bridge-mode", "--format", "svg", "--output", str(out)])
    assert res.exit_code == 2 and "apt install graphviz" in res.output and not out.exists()
