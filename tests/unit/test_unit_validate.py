"""validate(): every inconsistency in a Lab model is one ValidationError, before any kernel work."""

import dataclasses
import pytest

from nsbox.errors import ValidationError
from nsbox.model import Lab
from nsbox.validate import validate


def two_nodes() -> Lab:
    """host with a bridge br0 10.0.0.1/24; node a with eth0 10.0.0.2/24 on it; a serves http/80, tcp/7, udp/7."""
    lab = Lab("t")
    lab.host.bridge("br0", "10.0.0.1/24")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "veth-a", b_master="br0")
    a.address("eth0", "10.0.0.2/24")
    a.route("default", via="10.0.0.1")
    a.serve("http", 80).serve("tcp", 7).serve("udp", 7)
    return lab


def assert_invalid(lab: Lab, *words: str) -> str:
    with pytest.raises(ValidationError) as e:
        validate(lab)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_small_lab_is_valid():
    lab = two_nodes()
    lab.expect("host", "a", "icmp")
    lab.expect("host", "a", "http", 80)
    lab.expect("host", "10.0.0.2", "tcp", 80)      # an http server answers tcp too
    lab.expect("a", "host", "icmp")
    lab.expect("host", "a", "udp", 7)
    validate(lab)


# -- interfaces --

def test_interface_name_of_16_bytes_mentions_ifnamsiz():
    lab = two_nodes()
    lab.host.bridge("abcdefghijklmnop")
    assert_invalid(lab, "abcdefghijklmnop", "16 bytes", "IFNAMSIZ")


def test_interface_name_of_15_bytes_is_fine():
    lab = two_nodes()
    lab.host.bridge("abcdefghijklmno")
    validate(lab)


def test_interface_name_counts_bytes_not_characters():
    lab = two_nodes()
    lab.host.bridge("brücke-0123456")     # 14 characters, 15 bytes
    validate(lab)
    lab.host.bridge("brücke-01234567")    # 15 characters, 16 bytes
    assert_invalid(lab, "IFNAMSIZ")


@pytest.mark.parametrize("name", ["a/b", "a:b", "a b"])
def test_interface_name_with_bad_characters(name):
    lab = two_nodes()
    lab.host.bridge(name)
    assert_invalid(lab, "may not contain")


def test_veth_master_that_is_not_a_bridge():
    lab = two_nodes()
    b = lab.node("b")
    lab.veth(b, "eth0", lab.host, "veth-b", b_master="veth-a")
    assert_invalid(lab, "veth-b", "veth-a", "not a bridge")


def test_veth_master_that_does_not_exist():
    lab = two_nodes()
    b = lab.node("b")
    lab.veth(b, "eth0", lab.host, "veth-b", b_master="docker0")
    assert_invalid(lab, "docker0", "not a bridge")


def test_interface_defined_twice_is_refused_by_the_builder():
    lab = two_nodes()
    with pytest.raises(ValidationError, match="br0 defined twice"):
        lab.host.bridge("br0")


@pytest.mark.parametrize("mtu", [67, 65536])
def test_mtu_out_of_range(mtu):
    lab = two_nodes()
    lab.host.bridge("br1", mtu=mtu)
    assert_invalid(lab, "MTU", str(mtu))


def test_bad_node_name():
    lab = two_nodes()
    lab.node("-bad")
    assert_invalid(lab, "bad node name")


def test_node_defined_twice_is_refused_by_the_builder():
    lab = two_nodes()
    with pytest.raises(ValidationError, match="node a defined twice"):
        lab.node("a")


# -- addresses --

def test_address_on_unknown_interface():
    lab = two_nodes()
    lab.host.address("eth9", "192.0.2.1/24")
    assert_invalid(lab, "eth9", "unknown interface")


@pytest.mark.parametrize("cidr, words", [("10.0.0.300/24", "bad address"), ("10.0.0.5", "prefix length")])
def test_bad_address_is_refused_by_the_builder(cidr, words):
    lab = two_nodes()
    with pytest.raises(ValidationError, match=words):
        lab.host.address("br0", cidr)


def test_overlapping_subnets_on_two_interfaces_of_one_node_are_fine():
    """The kernel accepts them (each interface gets its prefix route): tests/kernel/test_kernel_routing.py."""
    lab = two_nodes()
    lab.host.bridge("br1", "10.0.0.129/25")
    validate(lab)


def test_two_addresses_on_one_interface_may_overlap():
    lab = two_nodes()
    lab.host.address("br0", "10.0.0.254/24")
    validate(lab)


def test_one_address_in_two_nodes_of_one_bridge_is_a_duplicate_unless_shared():
    # issue 12 item 22: it used to pass here and fail at run time with "refused"
    lab = two_nodes()
    b = lab.node("b")
    lab.veth(b, "eth0", lab.host, "veth-b", b_master="br0")
    b.address("eth0", "10.0.0.2/24")
    assert_invalid(lab, "10.0.0.2", "a:eth0", "b:eth0", "duplicate", "shared=True")
    # declared shared (anycast/VIP) by both holders: allowed, but ambiguous as a probe target
    for node in (lab.nodes["a"], b):
        node.addresses = [dataclasses.replace(x, shared=True) if x.ip == "10.0.0.2" else x for x in node.addresses]
    validate(lab)
    lab.expect("host", "10.0.0.2", "icmp")
    assert_invalid(lab, "10.0.0.2", "several nodes", "a, b")


def test_the_same_address_twice_on_one_interface():
    lab = two_nodes()
    lab.host.address("br0", "10.0.0.1/24")
    assert_invalid(lab, "10.0.0.1/24", "br0 twice", "EEXIST")


# -- routes --

def test_route_gateway_on_no_connected_subnet():
    lab = two_nodes()
    lab.nodes["a"].route("192.168.0.0/16", via="10.9.9.9")
    assert_invalid(lab, "10.9.9.9", "reachable through no address or device route")


def test_route_gateway_must_be_on_the_given_device():
    lab = two_nodes()
    lab.nodes["a"].route("192.168.0.0/16", via="10.0.0.1", dev="lo")
    assert_invalid(lab, "reachable through no address or device route out of lo")


def test_route_destination_with_host_bits():
    lab = two_nodes()
    lab.nodes["a"].route("10.1.0.1/16", via="10.0.0.1")
    assert_invalid(lab, "host bits set", "10.1.0.0/16")


@pytest.mark.parametrize("dst", ["nonsense", "10.1.0.0/33"])
def test_bad_route_destination(dst):
    lab = two_nodes()
    lab.nodes["a"].route(dst, via="10.0.0.1")
    assert_invalid(lab, "bad route destination", repr(dst))


@pytest.mark.parametrize("route, message", [
    ({"dev": "eth7"}, "no device eth7"),
    ({}, "needs a gateway or a device"),
    ({"via": "10.0.0.x"}, "bad gateway"),
])
def test_bad_route(route, message):
    lab = two_nodes()
    lab.nodes["a"].route("192.168.0.0/16", **route)
    assert_invalid(lab, message)


def test_route_by_device_only_is_fine():
    lab = two_nodes()
    lab.nodes["a"].route("192.168.0.0/16", dev="eth0")
    validate(lab)


# -- sysctls: only per-namespace net.* keys, nothing that changes the machine --

@pytest.mark.parametrize("key", [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.default.disable_ipv6",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
])
def test_net_sysctls_are_accepted(key):
    lab = two_nodes()
    lab.host.sysctl(key, 1)
    validate(lab)


@pytest.mark.parametrize("key", [
    "kernel.panic",
    "vm.overcommit_memory",
    "fs.file-max",
    "net",
    "net.ipv4",
    "net.ipv4..ip_forward",
    "net.ipv4.conf.all/../../../../kernel/panic",
    "net.ipv4.conf.all.forwarding ",
    "xnet.ipv4.ip_forward",
])
def test_non_net_or_odd_sysctls_are_rejected(key):
    lab = two_nodes()
    lab.host.sysctl(key, 1)
    assert_invalid(lab, "not a per-namespace net.* key")


# -- firewall --

def test_jump_to_unknown_chain():
    lab = two_nodes()
    lab.host.iptables("filter").append("FORWARD", "-j DOCKER-USER")
    assert_invalid(lab, "DOCKER-USER", "no chain of table filter")


def test_jump_to_chain_of_another_table():
    lab = two_nodes()
    lab.host.iptables("nat").new_chain("DOCKER")
    lab.host.iptables("filter").append("FORWARD", "-j DOCKER")
    assert_invalid(lab, "no chain of table filter")


def test_jump_to_builtin_chain_is_refused():
    lab = two_nodes()
    lab.host.iptables("filter").append("FORWARD", "-j INPUT")
    assert_invalid(lab, "jumps to INPUT")


def test_jump_to_user_chain_and_builtin_targets_are_fine():
    lab = two_nodes()
    flt = lab.host.iptables("filter").new_chain("MINE")
    flt.append("FORWARD", "-j MINE").append("MINE", "-j RETURN").append("INPUT", "-j REJECT")
    lab.host.iptables("nat").append("POSTROUTING", "-s 10.0.0.0/24 -j MASQUERADE")
    validate(lab)


@pytest.mark.parametrize("target", ["MASQUERADE", "SNAT --to-source 10.0.0.1", "DNAT --to-destination 10.0.0.2"])
def test_nat_targets_outside_nat(target):
    lab = two_nodes()
    lab.host.iptables("filter").append("FORWARD", f"-j {target}")
    assert_invalid(lab, "only valid in the nat table")


# -- servers --

def test_two_servers_on_one_port():
    lab = two_nodes()
    lab.nodes["a"].serve("tcp", 80)             # http already listens on tcp/80
    assert_invalid(lab, "two servers on tcp/80")


def test_tcp_and_udp_servers_may_share_a_port_number():
    lab = two_nodes()
    lab.nodes["a"].serve("udp", 80)
    validate(lab)


@pytest.mark.parametrize("port", [0, 65536])
def test_server_port_out_of_range(port):
    lab = two_nodes()
    lab.nodes["a"].serve("tcp", port)
    assert_invalid(lab, "out of range")


# -- checks --

def test_check_with_unknown_source_node():
    lab = two_nodes()
    lab.expect("ghost", "a", "icmp")
    assert_invalid(lab, "unknown source node 'ghost'")


def test_check_with_unknown_destination_node():
    lab = two_nodes()
    lab.expect("host", "ghost", "icmp")
    assert_invalid(lab, "unknown node or container 'ghost'")


@pytest.mark.parametrize("dst", ["8.8.8.8", "10.0.0.99", "203.0.113.1"])
def test_check_targeting_an_address_outside_the_lab(dst):
    lab = two_nodes()
    lab.expect("a", dst, "icmp")
    assert_invalid(lab, dst, "belongs to no node of the lab")


def test_check_targeting_a_node_without_address():
    lab = two_nodes()
    lab.node("b")
    lab.expect("a", "b", "icmp")
    assert_invalid(lab, "node b has no address")


@pytest.mark.parametrize("proto, port, allow, message", [
    ("tcp", 8080, True, "no http/tcp server on a port 8080"),
    ("udp", 80, True, "no udp server on a port 80"),        # only http listens on 80
    ("http", 7, True, "no http server on a port 7"),        # tcp echo is no http server
    ("tcp", 9, False, "no http/tcp server"),                # a deny needs a listener too
])
def test_check_needs_a_matching_server(proto, port, allow, message):
    lab = two_nodes()
    lab.expect("host", "a", proto, port, allow=allow)
    assert_invalid(lab, message)


@pytest.mark.parametrize("port", [None, 0, 70000])
def test_tcp_check_needs_a_valid_port(port):
    lab = two_nodes()
    lab.expect("host", "a", "tcp", port)
    assert_invalid(lab, "needs a port 1-65535")


def test_icmp_check_with_a_port():
    lab = two_nodes()
    lab.expect("host", "a", "icmp", 80)
    assert_invalid(lab, "icmp takes no port")


def test_unknown_check_protocol():
    lab = two_nodes()
    lab.expect("host", "a", "gre", 80)
    assert_invalid(lab, "unknown protocol 'gre'")


def test_seen_from_on_a_deny_check():
    lab = two_nodes()
    lab.expect("host", "a", "http", 80, allow=False, seen_from="10.0.0.1")
    assert_invalid(lab, "seen_from needs an allowed")


def test_seen_from_on_an_icmp_check():
    lab = two_nodes()
    lab.expect("host", "a", "icmp", seen_from="10.0.0.1")
    assert_invalid(lab, "seen_from needs an allowed")


def test_seen_from_outside_the_lab():
    lab = two_nodes()
    lab.expect("host", "a", "http", 80, seen_from="192.0.2.7")
    assert_invalid(lab, "192.0.2.7", "belongs to no node")


def test_conntrack_check_referring_to_an_icmp_check_is_valid_without_ports():
    lab = two_nodes()
    ping = lab.expect("host", "a", "icmp")
    lab.expect_conntrack("host", ping, reply_dst="10.0.0.1")
    validate(lab)  # the echo's entry (type/code/id); reply_sport would not apply
    lab.expect_conntrack("host", ping, reply_dst="10.0.0.1", reply_sport=7, name="with a port")
    assert_invalid(lab, "an ICMP entry has no ports")


def test_conntrack_check_referring_to_a_deny_check():
    lab = two_nodes()
    blocked = lab.expect("host", "a", "tcp", 7, allow=False)
    lab.expect_conntrack("host", blocked, reply_dst="10.0.0.1")
    assert_invalid(lab, "is not an allowed http/icmp/tcp/udp check")


def test_conntrack_check_on_unknown_node():
    lab = two_nodes()
    web = lab.expect("host", "a", "http", 80)
    lab.expect_conntrack("ghost", web, reply_dst="10.0.0.1")
    assert_invalid(lab, "unknown node 'ghost'")


def test_conntrack_reply_address_outside_the_lab():
    lab = two_nodes()
    web = lab.expect("host", "a", "http", 80)
    lab.expect_conntrack("host", web, reply_dst="8.8.8.8")
    assert_invalid(lab, "8.8.8.8", "belongs to no node")


def test_valid_conntrack_check():
    lab = two_nodes()
    web = lab.expect("host", "a", "http", 80, seen_from="10.0.0.1")
    ct = lab.expect_conntrack("host", web, reply_dst="10.0.0.1")
    validate(lab)
    assert ct.of == web.name
    assert ct.expected == "entry, reply to 10.0.0.1"
    assert web.expected == "allow, seen from 10.0.0.1"


def test_two_checks_with_one_name_are_refused_by_the_builder():
    lab = two_nodes()
    lab.expect("host", "a", "icmp")
    with pytest.raises(ValidationError, match="two checks named 'icmp host->a'"):
        lab.expect("host", "a", "icmp")


def test_default_check_names():
    lab = two_nodes()
    assert lab.expect("host", "a", "icmp").name == "icmp host->a"
    assert lab.expect("host", "a", "tcp", 7).name == "tcp/7 host->a"
    assert lab.expect("host", "a", "udp", 7, allow=False).expected == "deny"


def test_require_knows_every_probed_feature_and_rejects_a_typo():
    from nsbox.model.lab import FEATURES

    lab = Lab("t")
    lab.require(*FEATURES)
    assert lab.requires == set(FEATURES)
    with pytest.raises(ValidationError, match="unknown kernel feature 'vxlna'"):
        lab.require("vxlna")


# -- dropped_by: the deny must be the named rule's doing ---------------------------------

def _dropped_lab(dropped_by, allow=False):
    from nsbox.model import Lab
    lab = Lab("d")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "v0")
    a.address("eth0", "10.0.0.2/24")
    lab.host.address("v0", "10.0.0.1/24")
    lab.host.iptables("filter").policy("INPUT", "DROP")
    lab.host.iptables("filter").append("INPUT", "-p icmp -j DROP")
    lab.expect("a", "host", "icmp", allow=allow, dropped_by=dropped_by)
    return lab


@pytest.mark.parametrize("dropped_by, words", [
    (("host", "filter", "INPUT", "-p udp -j DROP"), "has no rule"),
    (("host", "filter", "OUTPUT", "policy"), "is not DROP"),
    (("host", "nat", "INPUT", "policy"), "names no chain"),
    (("nobody", "filter", "INPUT", "policy"), "names no chain"),
])
def test_dropped_by_must_name_a_dropping_rule(dropped_by, words):
    with pytest.raises(ValidationError, match=words):
        validate(_dropped_lab(dropped_by))


def test_dropped_by_needs_a_deny():
    with pytest.raises(ValidationError, match="needs a deny check"):
        validate(_dropped_lab(("host", "filter", "INPUT", "policy"), allow=True))


def test_dropped_by_accepts_a_rule_or_a_policy():
    validate(_dropped_lab(("host", "filter", "INPUT", "-p icmp -j DROP")))
    validate(_dropped_lab(("host", "filter", "INPUT", "policy")))
