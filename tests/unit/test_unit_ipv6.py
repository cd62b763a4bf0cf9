"""IPv6 without the kernel: conntrack rendering of both families, dual-stack peer
normalisation, nodad in plan/explain/netlink, family-aware node targets and
dropped_by in the probe's family."""

from __future__ import annotations

import socket

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from nsbox.errors import ValidationError
from nsbox.wire import ctnetlink, rtnl
from nsbox.observe import conntrack
from nsbox.model import Lab
from nsbox.plan import Netlink, plan_lab
from nsbox.plan.explain import script
from nsbox.validate import validate
from nsbox.verify.servers import unmapped
from tests.support.paths import DATA

# -- conntrack: entries as `conntrack -L -f ipv6` prints them ------------------------------


def _tuple(family: int, src: str, dst: str, proto: int, l4: list) -> dict:
    ip = "CTA_IP_V6" if family == socket.AF_INET6 else "CTA_IP_V4"
    return {"attrs": [["CTA_TUPLE_IP", {"attrs": [[f"{ip}_SRC", src], [f"{ip}_DST", dst]]}],
                      ["CTA_TUPLE_PROTO", {"attrs": [["CTA_PROTO_NUM", proto], *l4]}]]}


def _decoded(family: int, orig: dict, reply: dict, extra: list = ()) -> ctnetlink.RawEntry:
    """A ctnetlink message as the kernel sends it, encoded by pyroute2 (an encoder that is
    not nsbox's), then decoded from the bytes by nsbox/wire/ctnetlink.py."""
    m = nfct_msg()
    m["nfgen_family"] = family
    m["attrs"] = [["CTA_TUPLE_ORIG", orig], ["CTA_TUPLE_REPLY", reply], *extra]
    m.encode()
    return ctnetlink.entry(m.data)


def _ports(a: int, b: int) -> list:
    return [["CTA_PROTO_SRC_PORT", a], ["CTA_PROTO_DST_PORT", b]]


TCP_ESTABLISHED = [["CTA_PROTOINFO", {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [
    ["CTA_PROTOINFO_TCP_STATE", 3], ["CTA_PROTOINFO_TCP_WSCALE_ORIGINAL", 7],
    ["CTA_PROTOINFO_TCP_WSCALE_REPLY", 7], ["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", (0, 0)],
    ["CTA_PROTOINFO_TCP_FLAGS_REPLY", (0, 0)]]}]]}]]


def test_an_ipv6_tcp_entry_renders_as_conntrack_tools_prints_it():
    msg = _decoded(socket.AF_INET6,
                   _tuple(socket.AF_INET6, "fd00:10::2", "fd00:20::2", 6, _ports(40262, 80)),
                   _tuple(socket.AF_INET6, "fd00:20::2", "fd00:20::1", 6, _ports(80, 40262)), TCP_ESTABLISHED)
    e = conntrack._entry(msg)
    assert e.proto == "tcp" and e.reply.dst == "fd00:20::1"
    # conntrack -L -f ipv6, less protocol number, timeout and [flags] mark= use=
    assert e.render() == ("tcp ESTABLISHED src=fd00:10::2 dst=fd00:20::2 sport=40262 dport=80 "
                          "src=fd00:20::2 dst=fd00:20::1 sport=80 dport=40262")


def test_ipv6_addresses_are_compressed_as_inet_ntop_writes_them():
    msg = _decoded(socket.AF_INET6,
                   _tuple(socket.AF_INET6, "FD00:0:0:1:0:0:0:2", "fd00:0000::0:3", 17, _ports(5, 7)),
                   _tuple(socket.AF_INET6, "fd00::3", "fd00:0:0:1::2", 17, _ports(7, 5)))
    e = conntrack._entry(msg)
    assert (e.orig.src, e.orig.dst) == ("fd00:0:0:1::2", "fd00::3")
    assert e.render().startswith("udp src=fd00:0:0:1::2 dst=fd00::3 sport=5 dport=7 ")


def test_an_icmpv6_entry_shows_type_code_and_id():
    def icmp6(t: int) -> list:
        return [["CTA_PROTO_ICMPV6_ID", 7], ["CTA_PROTO_ICMPV6_TYPE", t], ["CTA_PROTO_ICMPV6_CODE", 0]]
    msg = _decoded(socket.AF_INET6, _tuple(socket.AF_INET6, "fd00::2", "fd00::3", 58, icmp6(128)),
                   _tuple(socket.AF_INET6, "fd00::3", "fd00::2", 58, icmp6(129)))
    assert conntrack._entry(msg).render() == ("icmpv6 src=fd00::2 dst=fd00::3 type=128 code=0 id=7 "
                                              "src=fd00::3 dst=fd00::2 type=129 code=0 id=7")


def test_an_ipv4_entry_renders_as_before():
    msg = _decoded(socket.AF_INET, _tuple(socket.AF_INET, "10.0.0.2", "10.0.1.2", 6, _ports(1000, 80)),
                   _tuple(socket.AF_INET, "10.0.1.2", "10.0.1.1", 6, _ports(80, 1000)), TCP_ESTABLISHED)
    assert conntrack._entry(msg).render() == ("tcp ESTABLISHED src=10.0.0.2 dst=10.0.1.2 sport=1000 dport=80 "
                                              "src=10.0.1.2 dst=10.0.1.1 sport=80 dport=1000")


# -- dual-stack servers ----------------------------------------------------------------------

@pytest.mark.parametrize("seen, ip", [("::ffff:10.0.0.2", "10.0.0.2"), ("fd00::2", "fd00::2"),
                                      ("10.0.0.2", "10.0.0.2"), ("::ffff:a00:2", "::ffff:a00:2")])
def test_ipv4_mapped_peers_are_ipv4(seen, ip):
    assert unmapped(seen) == ip


# -- addresses: nodad by default, as moby adds them ------------------------------------------

def _lab(dad: bool = False) -> Lab:
    lab = Lab("six")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "v0")
    a.address("eth0", "10.0.0.2/24")
    a.address("eth0", "fd00::2/64", dad=dad)
    lab.host.address("v0", "10.0.0.1/24")
    lab.host.address("v0", "fd00::1/64")
    lab.host.serve("tcp", 7)
    return lab


def test_ipv6_addresses_go_in_with_nodad_and_say_so():
    steps = [s for s in plan_lab(_lab()).steps if s.text.startswith("ip addr add")]
    texts = {s.node + ": " + s.text for s in steps}
    assert "a: ip addr add fd00::2/64 dev eth0 nodad" in texts
    assert "a: ip addr add 10.0.0.2/24 brd + dev eth0" in texts  # IPv4 has no DAD
    six = next(s for s in steps if s.text.startswith("ip addr add fd00::2"))
    assert isinstance(six.action, Netlink)
    assert "ip -n a addr add fd00::2/64 dev eth0 nodad" in script(_lab())


def test_with_dad_the_address_goes_in_plain():
    texts = [s.text for s in plan_lab(_lab(dad=True)).steps if s.node == "a"]
    assert "ip addr add fd00::2/64 dev eth0" in texts


def test_the_netlink_request_carries_ifa_f_nodad():
    m = rtnl.address(3, "fd00::2/64", nodad=True)
    assert m["family"] == socket.AF_INET6 and m["flags"] == 0x02  # IFA_F_NODAD, what `ip ... nodad` sends
    assert rtnl.address(3, "fd00::2/64")["flags"] == 0


# -- node-name targets by family ------------------------------------------------------------

def test_family_picks_the_nodes_address_of_that_family():
    lab = _lab()
    six = lab.expect("a", "host", "tcp", 7, family=6)
    four = lab.expect("a", "host", "tcp", 7, family=4)
    first = lab.expect("a", "host", "tcp", 7)
    validate(lab)
    assert lab.target(six.src, six.dst, six.proto, six.port, six.family).ip == "fd00::1"
    assert lab.target(four.src, four.dst, four.proto, four.port, four.family).ip == "10.0.0.1"
    assert lab.target(first.src, first.dst, first.proto, first.port, first.family).ip == "10.0.0.1"
    assert (six.name, four.name, first.name) == ("tcp/7 a->host (IPv6)", "tcp/7 a->host (IPv4)", "tcp/7 a->host")


def test_family_refusals_are_one_line():
    lab = _lab()
    lab.node("b")
    lab.veth(lab.nodes["b"], "eth0", lab.host, "v1")
    lab.nodes["b"].address("eth0", "10.0.9.2/24")
    lab.expect("a", "b", "icmp", family=6)
    with pytest.raises(ValidationError, match="node b has no IPv6 address to probe"):
        validate(lab)
    with pytest.raises(ValidationError, match="family must be 4 or 6"):
        _lab().expect("a", "host", "icmp", family=5)
    lab = _lab()
    lab.expect("a", "fd00::1", "icmp", family=4)
    with pytest.raises(ValidationError, match="fd00::1 is an IPv6 address, but the check asks for family 4"):
        validate(lab)


# -- dropped_by: the probe's family picks iptables or ip6tables -------------------------------

V6_RULE = "-d fd00::1/128 -p tcp -m tcp --dport 7 -j DROP"


def _dropped(dst: str, family: int | None, rule_family: int) -> Lab:
    lab = _lab()
    lab.host.firewall.table("filter", rule_family).append("INPUT", V6_RULE if rule_family == 6 else
                                                          "-d 10.0.0.1/32 -p tcp -m tcp --dport 7 -j DROP")
    spec = V6_RULE if rule_family == 6 else "-d 10.0.0.1/32 -p tcp -m tcp --dport 7 -j DROP"
    lab.expect("a", dst, "tcp", 7, allow=False, family=family, dropped_by=("host", "filter", "INPUT", spec))
    return lab


def test_dropped_by_an_ip6tables_rule_for_an_ipv6_probe():
    validate(_dropped("host", 6, 6))
    validate(_dropped("fd00::1", None, 6))
    validate(_dropped("host", 4, 4))


def test_dropped_by_in_the_other_familys_tables_is_refused():
    with pytest.raises(ValidationError, match=r"names no chain INPUT of table filter in node host "
                                              r"\(ip6tables: the probe is IPv6\)"):
        validate(_dropped("host", 6, 4))
    with pytest.raises(ValidationError, match="names no chain INPUT of table filter in node host$"):
        validate(_dropped("host", 4, 6))


def test_the_test_lab_validates():
    from nsbox.cli import load_labs

    lab = load_labs(("docker-dual-stack",), {}, (str(DATA / "ipv6"),))[0]
    validate(lab)
    assert sum(1 for c in lab.checks if getattr(c, "family", None) == 6) == 6
