"""Routing objects without the kernel: the `ip`/`bridge` text, the netlink request
(fields as iproute2 fills them), the plan's order, the JSON hand-over, and the
validation rules' acceptances (the refusals are shown against the kernel in
tests/kernel/test_kernel_routing.py)."""

import socket

import pytest

from nsbox.errors import ValidationError
from nsbox.wire import routing
from nsbox.model import Lab
from nsbox.model.lab import Fdb, Neigh, PolicyRule, Route
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.plan.explain import script
from nsbox.plan.steps import Netlink, Sysctl, plan_lab
from nsbox.validate import validate
from tests.support.explain_harness import base_lab


def _index(name: str) -> int:
    return {"lo": 1, "eth0": 7, "br0": 3, "p0": 4}[name]


@pytest.mark.parametrize("obj, text", [
    (Route("default", via="10.0.0.1"), "ip route add default via 10.0.0.1"),
    (Route("10.1.0.0/24", "10.0.0.1", "eth0", "10.0.0.2", "site", True, 20, "100", "static"),
     "ip route add 10.1.0.0/24 via 10.0.0.1 dev eth0 src 10.0.0.2 scope site onlink metric 20 table 100 proto static"),
    (Route("169.254.1.1", dev="eth0", scope="link"), "ip route add 169.254.1.1 dev eth0 scope link"),
    (Route("fd00::/64", via="fe80::1", dev="eth0"), "ip route add fd00::/64 via fe80::1 dev eth0"),
    (PolicyRule("100", 1000, "10.0.0.0/24", "10.1.0.0/16", "eth0", "eth1", 16, 255, True),
     "ip rule add pref 1000 not from 10.0.0.0/24 to 10.1.0.0/16 iif eth0 oif eth1 fwmark 0x10/0xff table 100"),
    (PolicyRule("main", src="fd00::/64"), "ip -6 rule add from fd00::/64 table main"),
    (Neigh("eth0", "10.0.0.9", "02:00:00:00:00:09"), "ip neigh add 10.0.0.9 lladdr 02:00:00:00:00:09 dev eth0 nud permanent"),
    (Neigh("eth0", "10.0.0.9", proxy=True), "ip neigh add proxy 10.0.0.9 dev eth0"),
    (Fdb("p0", "02:00:00:00:00:09"), "bridge fdb add 02:00:00:00:00:09 dev p0 master static"),
    (Fdb("vx0", "00:00:00:00:00:00", master=False, dst="192.168.0.2"),
     "bridge fdb add 00:00:00:00:00:00 dev vx0 self static dst 192.168.0.2"),
])
def test_ip_text(obj, text):
    assert routing.ip_text(obj) == text


def test_route_request_defaults_are_those_of_ip_route_add():
    m = routing.encode(Route("10.1.0.0/24", dev="eth0"), _index)
    assert (m["family"], m["dst_len"], m["table"], m["proto"], m["scope"], m["type"], m["flags"]) == \
        (socket.AF_INET, 24, 254, 3, 253, 1, 0)
    assert dict(m["attrs"]) == {"RTA_DST": "10.1.0.0", "RTA_OIF": 7}
    gw = routing.encode(Route("default", via="10.0.0.1"), _index)
    assert (gw["dst_len"], gw["scope"]) == (0, 0) and dict(gw["attrs"]) == {"RTA_GATEWAY": "10.0.0.1"}


def test_route_request_carries_every_option():
    m = routing.encode(Route("10.1.0.0/24", "10.0.0.1", "eth0", "10.0.0.2", "site", True, 20, "1000", "bird"), _index)
    assert (m["scope"], m["flags"], m["proto"], m["table"]) == (200, routing.RTNH_F_ONLINK, 12, 0)
    attrs = dict(m["attrs"])
    assert (attrs["RTA_TABLE"], attrs["RTA_PRIORITY"], attrs["RTA_PREFSRC"], attrs["RTA_GATEWAY"]) == \
        (1000, 20, "10.0.0.2", "10.0.0.1")
    m6 = routing.encode(Route("fd00::/64", via="fe80::1", dev="eth0"), _index)
    assert m6["family"] == socket.AF_INET6 and routing.route_metric(Route("fd00::/64", dev="eth0")) == 1024


def test_rule_request_keeps_host_bits_and_puts_big_tables_in_an_attribute():
    m = routing.encode(PolicyRule("70000", 5, src="10.0.0.1/24", iif="eth0", fwmark=1, invert=True), _index)
    assert (m["family"], m["src_len"], m["table"], m["action"], m["flags"]) == \
        (socket.AF_INET, 24, 0, routing.FR_ACT_TO_TBL, routing.FIB_RULE_INVERT)
    assert dict(m["attrs"]) == {"FRA_PRIORITY": 5, "FRA_SRC": "10.0.0.1", "FRA_IIFNAME": "eth0", "FRA_FWMARK": 1,
                                "FRA_TABLE": 70000}


def test_neigh_and_fdb_requests():
    n = routing.encode(Neigh("eth0", "10.0.0.9", "02:00:00:00:00:09", state="noarp"), _index)
    assert (n["family"], n["ifindex"], n["state"], n["flags"]) == (socket.AF_INET, 7, 0x40, 0)
    p = routing.encode(Neigh("eth0", "10.0.0.9", proxy=True), _index)
    assert p["flags"] == routing.NTF_PROXY and dict(p["attrs"]) == {"NDA_DST": "10.0.0.9"}
    f = routing.encode(Fdb("p0", "02:00:00:00:00:0A"), _index)
    # bridge/fdb.c: state starts NUD_NOARP, 'static' adds NUD_REACHABLE
    assert (f["family"], f["ifindex"], f["state"], f["flags"]) == (routing.AF_BRIDGE, 4, 0x42, routing.NTF_MASTER)
    assert dict(f["attrs"]) == {"NDA_LLADDR": "02:00:00:00:00:0a"}


def _lab() -> Lab:
    lab = base_lab()
    a = lab.nodes["a"]
    a.route("169.254.1.1", dev="eth0", scope="link").route("default", via="169.254.1.1", dev="eth0")
    a.route("10.5.0.0/24", dev="eth0", table=100, src="10.0.0.2", metric=7, proto="static")
    a.rule(100, priority=10, src="10.0.0.0/24")
    a.neigh("eth0", "10.0.0.9", "02:00:00:00:00:09")
    lab.host.fdb("p0", "02:00:00:00:00:09")
    lab.host.sysctl("net.ipv4.conf.p0.proxy_arp", 1)
    return lab


def test_the_plan_keeps_route_order_and_sets_interface_sysctls_once_the_interface_exists():
    plan = plan_lab(_lab())
    texts = [s.text for s in plan.steps]
    assert texts.index("ip route add 169.254.1.1 dev eth0 scope link") < \
        texts.index("ip route add default via 169.254.1.1 dev eth0")
    creates_p0 = next(i for i, s in enumerate(plan.steps) if isinstance(s.action, Netlink) and "p0" in s.action.creates)
    sysctl = next(i for i, s in enumerate(plan.steps) if isinstance(s.action, Sysctl))
    assert creates_p0 < sysctl
    fdb = next(i for i, s in enumerate(plan.steps) if s.text.startswith("bridge fdb"))
    assert plan.steps[fdb].action.needs == ("p0",)


def test_explain_writes_bridge_commands_with_bridge_minus_n():
    text = script(_lab())
    assert "bridge -n host fdb add 02:00:00:00:00:09 dev p0 master static\n" in text
    assert "ip -n a rule add pref 10 from 10.0.0.0/24 table 100\n" in text
    assert "ip -n a route add 10.5.0.0/24 dev eth0 src 10.0.0.2 metric 7 table 100 proto static\n" in text


def test_new_fields_survive_the_json_hand_over():
    lab = _lab()
    validate(lab)
    back = lab_from_dict(lab_to_dict(lab))
    for name in ("a", "host"):
        n, m = lab.nodes[name], back.nodes[name]
        assert (n.routes, n.rules, n.neighs, n.fdbs) == (m.routes, m.rules, m.neighs, m.fdbs)
    validate(back)


def test_unknown_fields_in_a_handed_over_route_are_refused():
    data = lab_to_dict(_lab())
    data["nodes"][1]["routes"][0]["via_mars"] = "1.2.3.4"
    from nsbox.errors import RecipeError
    with pytest.raises(RecipeError, match="unknown fields"):
        lab_from_dict(data)


# -- validation: the CNI layouts and other things the kernel takes --

def test_kindnet_ptp_and_calico_layouts_validate():
    lab = Lab("t")
    for i in (1, 2):
        pod = lab.node(f"pod{i}")
        lab.veth(pod, "eth0", lab.host, f"veth{i}")
        lab.host.address(f"veth{i}", "10.244.0.1/32")
        lab.host.route(f"10.244.0.{i + 4}/32", dev=f"veth{i}", scope="host")
        lab.host.sysctl(f"net.ipv4.conf.veth{i}.proxy_arp", 1)
        pod.address("eth0", f"10.244.0.{i + 4}/32")
        pod.route("169.254.1.1", dev="eth0", scope="link")
        pod.route("default", via="169.254.1.1", dev="eth0")
    validate(lab)


@pytest.mark.parametrize("add, words", [
    (lambda n: n.route("10.5.0.0/24", dev="eth0", table="nowhere"), "table 'nowhere'"),
    (lambda n: n.route("10.5.0.0/24", dev="eth0", scope="galaxy"), "scope 'galaxy'"),
    (lambda n: n.route("10.5.0.0/24", dev="eth0", proto=999), "proto '999'"),
    (lambda n: n.route("10.5.0.0/24", dev="eth0", metric=-1), "metric -1"),
    (lambda n: n.route("10.5.0.0/24", via="fd00::1"), "not of the route's address family"),
    (lambda n: n.rule(100, fwmask=0xff), "fwmask needs a fwmark"),
    (lambda n: n.rule(100, src="10.0.0.0/24", dst="fd00::/64"), "different address families"),
    (lambda n: n.rule(100, iif="x" * 16), "iif"),
    (lambda n: n.neigh("eth0", "10.0.0.9", "zz:00:00:00:00:09"), "not a MAC"),
    (lambda n: n.neigh("eth0", "10.0.0.9", state="gone"), "state 'gone'"),
    (lambda n: n.fdb("eth0", "02:00:00:00:00:09", state="forever"), "state 'forever'"),
])
def test_input_ip_would_not_parse(add, words):
    lab = Lab("t")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "p0")
    a.address("eth0", "10.0.0.2/24")
    add(a)
    with pytest.raises(ValidationError) as e:
        validate(lab)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_message_types_are_pyroute2s_without_importing_it_for_validation():
    from pyroute2.netlink import rtnl
    assert (routing.RTM_NEWROUTE, routing.RTM_NEWNEIGH, routing.RTM_NEWRULE) == \
        (rtnl.RTM_NEWROUTE, rtnl.RTM_NEWNEIGH, rtnl.RTM_NEWRULE)
