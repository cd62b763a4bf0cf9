"""nsbox/validate_hints.py: labs the kernel takes but whose checks cannot pass as written get
one warning line each (issue 16's Calico-style node: no address to probe from, proxy ARP
with no route to the gateway); the working layouts get none."""

import importlib.util
from pathlib import Path

import pytest

from nsbox.model import Lab
from nsbox.validate import validate
from nsbox.validate_hints import warnings

from tests.support.paths import DATA  # noqa: E402


def _calico(fixed: int) -> Lab:
    spec = importlib.util.spec_from_file_location("_hints", DATA / "hints" / "hints.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lab = Lab("calico-node")
    mod.build(lab, fixed=fixed)
    validate(lab)  # the kernel takes both: validation does not refuse them
    return lab


def test_the_broken_calico_node_gets_both_warnings():
    w = warnings(_calico(0))
    assert len(w) == 2, w
    assert "check 'tcp host->pod:7': host has no IPv4 address" in w[0] and "0.0.0.0" in w[0]
    assert w[1].startswith("node host: proxy_arp on cali0123456789a cannot answer for 169.254.1.1") and \
        "has no route to it" in w[1]


def test_the_working_calico_node_gets_none():
    assert warnings(_calico(1)) == []


def test_a_blackhole_is_no_route_for_proxy_arp():
    lab = _calico(1)
    lab.host.route("169.254.0.0/16", type="blackhole")
    [w] = warnings(lab)
    assert "only a blackhole route to it" in w


def test_a_deny_from_an_addressless_node_is_not_warned():
    lab = Lab("x")
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    b.address("eth0", "10.0.0.2/24")
    lab.expect(a, b, "icmp", allow=False)
    assert warnings(lab) == []


@pytest.mark.parametrize("recipe,sets", [("pod-to-pod", {"cni": c}) for c in ("bridge", "ptp", "vxlan", "calico")]
                         + [("host-network", {"cni": "calico"}), ("bridge-mode", {}), ("none-mode", {})])
def test_builtin_recipes_are_not_warned(recipe, sets):
    from nsbox.recipe import get

    assert warnings(get(recipe).build(sets)) == []
