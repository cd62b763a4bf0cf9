"""Kits behind interfaces: dockerd's layouts as firewallers, kits adding to the model
only through its methods.

1. The daemon asks no question about its layout: every firewall difference is the
   layout's Firewaller (kits/docker/firewaller.py: Iptabler, Nftabler, Iptabler2010, as
   moby's iptabler and nftabler), every other one a field of its Release. Read from
   daemon.py's source: no comparison with a layout name is left in it.
2. The nftabler's docker-bridges table is one ruleset of the host's model, replaced in
   its place through Firewall.nftables(replaces=) as events change it; no placeholder,
   no write by index (the whole-table goldens are tests/unit/test_unit_kits_docker.py's).
3. A pod joins its node's machine through Lab.place; no kit assigns into lab.machines.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from nsbox.errors import ValidationError
from nsbox.kits import docker
from nsbox.kits.docker import firewaller
from nsbox.kits.docker.daemon import LAYOUTS, RELEASES
from nsbox.kits.dockerfw import nftables as fwnft
from nsbox.model import Lab
from nsbox.model.firewall import Firewall

KITS = Path(docker.__file__).resolve().parents[1]


def _layout_names_compared(path: Path) -> list[str]:
    """Comparisons in PATH with a layout name as a constant ("29", "20.10", ...)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            consts = [c.value for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
            consts += [e.value for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                       for e in c.elts if isinstance(e, ast.Constant)]
            hit = [c for c in consts if c in LAYOUTS]
            if hit:
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


# ------------------------------------------------------------------ 1. firewallers


def test_the_daemon_never_switches_on_its_layout() -> None:
    assert _layout_names_compared(KITS / "docker" / "daemon.py") == []


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_has_a_firewaller_with_the_whole_interface(layout: str) -> None:
    impl = firewaller.FIREWALLERS[layout]
    wanted = {n for n, _ in inspect.getmembers(firewaller.Firewaller, inspect.isfunction) if not n.startswith("_")}
    assert wanted == {"start", "new_network", "add_endpoint", "docker_user", "resolver"}
    assert all(callable(getattr(impl, n, None)) for n in wanted)
    assert impl.layout == layout and layout in RELEASES
    lab = Lab("t")
    assert type(docker.Daemon(lab, lab.host, layout=layout).firewaller) is impl


def test_docker_user_is_refused_where_the_firewaller_has_no_such_chain() -> None:
    lab = Lab("t")
    with pytest.raises(ValidationError, match="DOCKER-USER: no such chain for IPv4 .*29-nftables"):
        docker.Daemon(lab, lab.host, layout="29-nftables").docker_user("-s 10.0.0.1 -j DROP")
    lab = Lab("t")
    d = docker.Daemon(lab, lab.host, layout="29")
    d.docker_user("-s 10.0.0.1 -j DROP")
    assert [r.render() for r in lab.host.firewall.tables["filter"].chains["DOCKER-USER"].rules][0] == \
        "-s 10.0.0.1/32 -j DROP"


# ------------------------------------------------------------------ 2. nft, replaced in place


def test_firewall_nftables_replaces_a_ruleset_in_its_place() -> None:
    fw = Firewall()
    fw.nftables("table ip a {}")
    fw.nftables("table ip b {}")
    fw.nftables("table ip a { chain c {} }", replaces="table ip a {}")
    assert fw.nft == ["table ip a { chain c {} }", "table ip b {}"]
    fw.nftables("table ip z {}", replaces="not there")  # nothing to replace: added
    assert fw.nft[-1] == "table ip z {}"


def test_nftabler_keeps_one_table_per_family_as_the_daemon_changes_it() -> None:
    lab = Lab("t")
    lab.host.nftables("table inet admin {}")  # someone else's ruleset first: it stays first
    d = docker.Daemon(lab, lab.host, layout="29-nftables", ipv6=True)
    first = list(lab.host.firewall.nft)
    net = d.default_bridge()
    d.run("c1", net, publish=["8080:80"])
    d.run("c2", net)
    nft = lab.host.firewall.nft
    assert nft == ["table inet admin {}", fwnft.loadable(d.nft_text(4)), fwnft.loadable(d.nft_text(6))]
    assert nft[1:] != first[1:]  # the events changed the tables, in their places
    assert not any("placeholder" in r for r in nft)


def test_no_kit_writes_the_models_lists_by_index() -> None:
    """Subscript assignment into a model list (firewall.nft[i] = ..., lab.machines[i] = ...)
    in any kit: the model's methods do that."""
    found = []
    for path in sorted(KITS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute) and \
                            t.value.attr in ("nft", "machines"):
                        found.append(f"{path.relative_to(KITS)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


# ------------------------------------------------------------------ 3. Lab.place


def test_place_adds_a_node_to_a_machine_after_its_own() -> None:
    lab = Lab("t")
    a, p1 = lab.node("a"), lab.node("p1")
    lab.node("p2")
    lab.machine("m", [a])
    lab.place("m", p1)
    lab.place("m", "p2")
    assert [(m.name, m.nodes) for m in lab.machines] == [("m", ("a", "p1", "p2"))]
    assert lab.machine_of("p2") == "m"


def test_place_refuses_a_node_of_another_machine_and_an_unknown_machine() -> None:
    lab = Lab("t")
    a, b = lab.node("a"), lab.node("b")
    lab.machine("m", [a])
    lab.machine("n", [b])
    with pytest.raises(ValidationError, match="node b is already in machine n"):
        lab.place("m", b)
    with pytest.raises(ValidationError, match="no machine 'x'"):
        lab.place("x", b)
    with pytest.raises(ValidationError):
        lab.place("m", "nobody")
    assert [m.nodes for m in lab.machines] == [("a",), ("b",)]


def test_k8s_pods_join_their_nodes_machine() -> None:
    from nsbox.kits import k8s

    lab = Lab("t")
    c = k8s.Cluster(lab)
    n1, n2 = c.node("n1", "10.244.1.0/24"), c.node("n2", "10.244.2.0/24")
    c.pod(n1, "p1")
    c.pod(n2, "p2")
    c.pod(n1, "p3")
    machines = {m.name: m.nodes for m in lab.machines}
    assert machines["n1"] == ("n1", "p1", "p3") and machines["n2"] == ("n2", "p2")
