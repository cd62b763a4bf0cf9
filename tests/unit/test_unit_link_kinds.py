"""Link kinds: validation in one line before anything is built, the `ip` text,
the netlink request (decoded back by pyroute2), and the jail hand-over."""

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nsbox.errors import ValidationError
from nsbox.kinds import links
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.plan import plan_lab


def _lab() -> Lab:
    lab = Lab("t")
    lan = lab.node("lan")
    lan.bridge("br0")
    lab.veth(lab.host, "eth0", lan, "p0", b_master="br0")
    c = lab.node("c1")
    lab.macvlan(c, "eth0", parent=(lab.host, "eth0"), mode="private")
    lab.vxlan(lab.host, "vx0", 7, local="192.0.2.1", dev="eth0", learning=False)
    return lab


def test_registry_has_every_kind_of_the_issue():
    assert {"veth", "bridge", "macvlan", "ipvlan", "vlan", "vxlan", "dummy"} <= set(links.KINDS)


def test_every_kind_brings_its_feature_probe():
    from nsbox.host import features

    assert set(links.KINDS) <= set(features.PROBES)


def test_generic_link_builds_veth_and_bridge_like_their_builders():
    by_builder, generic = Lab("t"), Lab("t")
    for lab in (by_builder, generic):
        lab.node("c1")
    by_builder.host.bridge("br0", stp=True)
    by_builder.veth(by_builder.nodes["c1"], "eth0", by_builder.host, "v1", b_master="br0", mtu=1400)
    generic.link("bridge", "host", "br0", stp=True)
    generic.link("veth", "host", "v1", peer=("c1", "eth0"), master="br0", mtu=1400)
    texts = [[s.text for s in plan_lab(lab).steps] for lab in (by_builder, generic)]
    assert texts[0] == texts[1]
    assert "ip link add br0 type bridge stp_state 1" in texts[1]
    assert "ip link add v1 mtu 1400 type veth peer name eth0 mtu 1400 netns c1\nip link set v1 master br0 up" in texts[1]


@pytest.mark.parametrize("build, message", [
    (lambda lab: lab.link("veth", "host", "v1"), "veth needs peer=\\(node, interface\\)"),
    (lambda lab: lab.link("veth", "host", "v1", peer=("nope", "eth0")), "peer node 'nope'"),
    (lambda lab: lab.link("bridge", "host", "br0", stp=1), "bridge stp must be True or False"),
    (lambda lab: lab.link("bridge", "host", "br0", hairpin=True), "unknown option\\(s\\) hairpin"),
])
def test_generic_veth_and_bridge_refusals(build, message):
    with pytest.raises(ValidationError, match=message):
        build(Lab("t"))


def test_generic_vlan_filtering_bridge_becomes_a_requirement():
    lab = Lab("t")
    lab.link("bridge", "host", "br0", vlan_filtering=True)
    assert "vlan_filtering" in lab.requires


@pytest.mark.parametrize("build, message", [
    (lambda lab: lab.macvlan("c", "m0", parent=("host", "eth0"), mode="bridged"), "macvlan mode 'bridged'"),
    (lambda lab: lab.macvlan("c", "m0", parent=("host", "nope")), "parent nope is no interface of node host"),
    (lambda lab: lab.vlan("c", "v0", parent=("host", "eth0"), id=4095), "vlan id 4095 out of range"),
    (lambda lab: lab.vxlan("c", "vx0", 1 << 24), "vxlan vni"),
    (lambda lab: lab.vxlan("c", "vx0", 1, dev="eth9"), "device eth9 is no interface of node c"),
    (lambda lab: lab.vxlan("c", "vx0", 1, local="fe80::1"), "not an IPv4 address"),
    (lambda lab: lab.link("dummy", "c", "d0", colour="red"), "unknown option(s) colour"),
    (lambda lab: lab.link("geneve6", "c", "g0"), "unknown link kind 'geneve6'"),
    (lambda lab: lab.link("dummy", "c", "d0", parent=("host", "eth0")), "takes no parent"),
])
def test_bad_options_are_one_line_errors(build, message):
    lab = Lab("t")
    c = lab.node("c")
    lab.veth(c, "eth0", lab.host, "eth0")
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(lab)


def test_kind_becomes_a_requirement():
    assert {"macvlan", "vxlan"} <= _lab().requires


def test_ip_text_and_order():
    texts = [f"{s.node}: {s.text}" for s in plan_lab(_lab()).steps]
    mac = texts.index("host: ip link add nsbc0 link eth0 netns c1 type macvlan mode private")
    vx = texts.index("host: ip link add vx0 type vxlan id 7 dstport 4789 local 192.0.2.1 dev eth0 nolearning")
    veth = texts.index("lan: ip link add p0 type veth peer name eth0 netns host\nip link set p0 master br0 up")
    assert veth < mac < vx
    assert texts[mac + 1] == "c1: ip link set nsbc0 name eth0"
    assert texts.index("c1: ip link set eth0 up") > mac + 1


def test_a_child_named_like_a_link_of_its_parents_node_is_made_under_an_interim_name():
    """Kernels before 6.x (Debian's 6.1) look the new name up in the namespace the request is
    sent in: `ip link add eth0 link eth0 netns c1 type macvlan` is EEXIST there. A child whose
    name is free in the parent's node is made under its own name, as before."""
    lab = _lab()
    lab.macvlan(lab.node("c2"), "mv0", parent=(lab.host, "eth0"))
    texts = [f"{s.node}: {s.text}" for s in plan_lab(lab).steps]
    assert "host: ip link add mv0 link eth0 netns c2 type macvlan mode bridge" in texts
    assert not any(t.startswith("c2: ip link set") and " name " in t for t in texts)
    rename = next(s for s in plan_lab(lab).steps if s.text == "ip link set nsbc0 name eth0")
    m = rename.action.encode(_Ctx2())
    assert (m["index"], m.get_attr("IFLA_IFNAME")) == (7, "eth0")


class _Ctx2:
    def index(self, name):
        return {"nsbc0": 7}[name]


class _Ctx:
    def index(self, name):
        return {"eth0": 5}[name]

    def netns_fd(self, node):
        return 9


def test_netlink_request_decodes_to_the_spec():
    lab = _lab()
    m = links.encode(lab.links[0], _Ctx())
    m.encode()
    back = ifinfmsg(m.data)
    back.decode()
    assert back.get_attr("IFLA_IFNAME") == "eth0"
    assert back.get_attr("IFLA_LINK") == 5 and back.get_attr("IFLA_NET_NS_FD") == 9
    info = back.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "macvlan"
    assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_MACVLAN_MODE") == "private"


def test_links_survive_the_jail_hand_over():
    lab = _lab()
    back = lab_from_dict(lab_to_dict(lab))
    assert back.links == lab.links
    assert back.links[1].spec().learning is False
