"""Link options, admin state and link-state checks in the model, the plan and the
jail hand-over (the kernel side is tests/kernel/test_kernel_link_options.py)."""

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nsbox.errors import ValidationError
from nsbox.kinds import links as kinds
from nsbox.model import Lab, LinkCheck
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.plan import Netlink, plan_lab
from nsbox.validate import validate


def _lab() -> Lab:
    lab = Lab("opts")
    h = lab.host
    h.bridge("br0", "10.0.0.1/24", mac="02:42:AC:11:00:01", txqueuelen=100, stp=True)
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", h, "va", b_master="br0", mtu=1400)
    h.set_link("va", txqueuelen=0, hairpin=True, isolated=True)
    a.set_link("eth0", mac="02:00:00:00:00:0a", txqueuelen=500)
    lab.veth(b, "eth0", h, "vb", b_master="br0")
    h.set_link("vb", up=False)
    b.set_link("lo", up=False, mtu=1500)
    lab.vxlan(a, "vx0", 42, dev="eth0")
    a.set_link("vx0", mac="02:00:00:00:00:0b", up=False)
    lab.expect_link(b, "eth0", "DOWN")
    return lab


def _texts(lab: Lab) -> list[str]:
    return [f"{s.node}: {s.text}" for s in plan_lab(lab).steps]


def test_ip_text_of_each_option():
    texts = _texts(_lab())
    assert "host: ip link add br0 address 02:42:AC:11:00:01 txqueuelen 100 type bridge stp_state 1" in texts
    assert ("host: ip link add va mtu 1400 txqueuelen 0 type veth peer name eth0 address 02:00:00:00:00:0a "
            "mtu 1400 txqueuelen 500 netns a\nip link set va master br0 up") in texts
    assert "host: ip link set va type bridge_slave hairpin on isolated on" in texts
    # vb is left down: enslaved, never set up
    assert "host: ip link add vb type veth peer name eth0 netns b\nip link set vb master br0" in texts
    assert "a: ip link add vx0 address 02:00:00:00:00:0b type vxlan id 42 dstport 4789 dev eth0" in texts
    assert "b: ip link set lo mtu 1500" in texts
    # left down: no `up` step for b's lo, vb, a's vx0; the rest come up
    assert "b: ip link set lo up" not in texts and "a: ip link set vx0 up" not in texts
    assert "a: ip link set lo up" in texts and "b: ip link set eth0 up" in texts


def test_port_options_come_after_the_port_exists():
    steps = plan_lab(_lab()).steps
    texts = [s.text for s in steps]
    add = next(i for i, t in enumerate(texts) if t.startswith("ip link add va "))
    port = texts.index("ip link set va type bridge_slave hairpin on isolated on")
    assert port > add and steps[port].action.needs == ("va",)


class _Ctx:
    def index(self, name):
        return {"br0": 3, "va": 4, "eth0": 2, "lo": 1}[name]

    def netns_fd(self, node):
        return 9


def _decoded(step) -> ifinfmsg:
    m = step.action.encode(_Ctx())
    m.encode()
    back = ifinfmsg(m.data)
    back.decode()
    return back


def test_netlink_requests_carry_the_options():
    steps = {s.text.splitlines()[0]: s for s in plan_lab(_lab()).steps if isinstance(s.action, Netlink)}
    br = _decoded(steps["ip link add br0 address 02:42:AC:11:00:01 txqueuelen 100 type bridge stp_state 1"])
    assert br.get_attr("IFLA_ADDRESS") == "02:42:ac:11:00:01" and br.get_attr("IFLA_TXQLEN") == 100
    assert br.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("IFLA_BR_STP_STATE") == 1
    veth = _decoded(next(s for t, s in steps.items() if t.startswith("ip link add va ")))
    assert veth.get_attr("IFLA_TXQLEN") == 0 and veth.get_attr("IFLA_MASTER") == 3 and veth["flags"] & 1
    peer = veth.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:0a" and peer.get_attr("IFLA_TXQLEN") == 500
    down = _decoded(next(s for t, s in steps.items() if t.startswith("ip link add vb ")))
    assert not down["flags"] & 1  # created without IFF_UP
    port = _decoded(steps["ip link set va type bridge_slave hairpin on isolated on"])
    assert port["index"] == 4
    info = port.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge"
    data = info.get_attr("IFLA_INFO_SLAVE_DATA")
    assert (data.get_attr("IFLA_BRPORT_MODE"), data.get_attr("IFLA_BRPORT_ISOLATED")) == (1, 1)


def test_options_and_link_checks_survive_the_jail_hand_over():
    lab = _lab()
    back = lab_from_dict(lab_to_dict(lab))
    validate(back)
    for name, node in lab.nodes.items():
        assert back.nodes[name].interfaces == node.interfaces
    assert back.checks == lab.checks and isinstance(back.checks[0], LinkCheck)
    assert _texts(back) == _texts(lab)


@pytest.mark.parametrize("build, message", [
    (lambda lab: lab.host.bridge("br0", mac="01:00:5e:00:00:01"), "multicast or zero"),
    (lambda lab: lab.host.bridge("br0", mac="02:42:ac:11:00"), "bad MAC"),
    (lambda lab: lab.host.bridge("br0", txqueuelen=-1), "txqueuelen -1 out of range"),
    (lambda lab: lab.host.bridge("br0", stp="yes"), "stp must be True or False"),
    (lambda lab: lab.host.set_link("lo", mac="02:00:00:00:00:01"), "loopback device takes no MAC"),
    (lambda lab: lab.host.set_link("eth9", up=False), "unknown interface eth9"),
    (lambda lab: lab.host.set_link("lo", hairpin=True), "in no bridge"),
    (lambda lab: lab.host.set_link("lo", mtu=40), "MTU 40 out of range"),
])
def test_bad_options_are_one_line_errors(build, message):
    with pytest.raises(ValidationError, match=message) as e:
        build(Lab("bad"))
    assert "\n" not in str(e.value)


def test_validation_on_the_trusted_side_refuses_what_the_builder_would():
    """A forged hand-over (options the builder never let through) is refused by validate()."""
    d = lab_to_dict(_lab())
    host = next(n for n in d["nodes"] if n["name"] == "host")
    next(i for i in host["interfaces"] if i["name"] == "br0")["mac"] = "ff:ff:ff:ff:ff:ff"
    with pytest.raises(ValidationError, match="multicast or zero"):
        validate(lab_from_dict(d))
    d = lab_to_dict(_lab())
    host = next(n for n in d["nodes"] if n["name"] == "host")
    next(i for i in host["interfaces"] if i["name"] == "lo")["stp"] = True
    with pytest.raises(ValidationError, match="bridge options"):
        validate(lab_from_dict(d))


def test_vlan_filtering_must_be_required():
    lab = Lab("vf")
    lab.host.bridge("br0", vlan_filtering=True)
    with pytest.raises(ValidationError, match='lab.require\\("vlan_filtering"\\)'):
        validate(lab)
    lab.require("vlan_filtering")
    validate(lab)
    assert "vlan_filtering 1" in _texts(lab)[1]


@pytest.mark.parametrize("node, iface, state, message", [
    ("b", "eth9", "DOWN", "eth9 is no interface of node 'b'"),
    ("zz", "eth0", "DOWN", "no interface of node 'zz'"),
    ("b", "eth0", "down", "unknown link state 'down'"),
])
def test_bad_link_checks(node, iface, state, message):
    lab = _lab()
    lab.expect_link(node, iface, state, name="x")
    with pytest.raises(ValidationError, match=message):
        validate(lab)


def test_ip_text_of_a_kind_link_takes_the_words():
    lab = _lab()
    assert kinds.ip_text(lab.links[0], " address 02:00:00:00:00:0b").startswith(
        "ip link add vx0 address 02:00:00:00:00:0b type vxlan id 42")


def test_show_lists_options_and_what_is_left_down():
    from nsbox.plan import show

    out = show.text(_lab())
    assert "  br0 (bridge)  10.0.0.1/24  [address 02:42:AC:11:00:01 txqueuelen 100 stp_state 1]\n" in out
    assert "  va (veth) in bridge br0 <-> a:eth0  [mtu 1400 txqueuelen 0 hairpin on isolated on]\n" in out
    assert "  vb (veth) in bridge br0 <-> b:eth0  [down]\n" in out
    assert "  lo (lo)  [mtu 1500 down]\n" in out


@pytest.mark.parametrize("route, message", [
    (dict(dst="10.1.0.0/24", dev="eth0"), "through eth0, which is left down"),
    (dict(dst="10.2.0.0/24", via="10.0.0.2"), "only on a subnet of a device left down"),
])
def test_routes_through_a_device_left_down_are_refused(route, message):
    """tests/kernel/test_kernel_link_options.py shows the kernel refusing both."""
    lab = Lab("down")
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "10.0.0.1/24")
    a.set_link("eth0", up=False)
    a.route(**route)
    with pytest.raises(ValidationError, match=message):
        validate(lab)
    a.set_link("eth0", up=True)
    validate(lab)
