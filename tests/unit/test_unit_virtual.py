"""Validation of virtual addresses, answered_by, loopback probes, containers and machines."""

from __future__ import annotations

import pytest

from nsbox.errors import ValidationError
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.validate import validate


def _lab() -> Lab:
    lab = Lab("v")
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "10.0.0.1/24")
    b.address("eth0", "10.0.0.2/24")
    b.serve("http", 80)
    return lab


def _invalid(lab: Lab, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        validate(lab)


def test_a_probe_to_an_undeclared_address_is_refused():
    lab = _lab()
    lab.expect("a", "10.96.0.10", "http", 80)
    _invalid(lab, "belongs to no node of the lab and is declared no virtual address")


def test_a_declared_virtual_address_may_be_probed_without_a_server():
    lab = _lab()
    lab.virtual("10.96.0.10")
    lab.expect("a", "10.96.0.10", "http", 80, answered_by="b")
    validate(lab)


def test_a_published_port_needs_declaring():
    lab = _lab()
    lab.expect("a", "10.0.0.2", "tcp", 8080)
    _invalid(lab, r"no http/tcp server on b port 8080 \(a published port or Service: declare it with lab.virtual\)")
    lab.virtual("10.0.0.2", proto="tcp", port=8080, node="b")
    validate(lab)


@pytest.mark.parametrize("declare, words", [
    (lambda lab: lab.virtual("10.0.0.2"), "the kernel answers it"),
    (lambda lab: lab.virtual("10.9.9.9", proto="tcp", port=80), "no node owns 10.9.9.9"),
    (lambda lab: lab.virtual("10.0.0.2", proto="tcp", port=80), "a server of b listens there"),
    (lambda lab: lab.virtual("10.0.0.2", proto="tcp", port=81, node="a"), "is no address of node a"),
])
def test_virtual_refusals(declare, words):
    lab = _lab()
    declare(lab)
    _invalid(lab, words)


@pytest.mark.parametrize("kwargs, words", [
    (dict(ip="10.96.0.10", proto="tcp"), "give proto and port together"),
    (dict(ip="10.96.0.10", proto="gre", port=1), "proto is tcp, udp or sctp"),
    (dict(ip="10.96.0.x"), "bad address"),
    (dict(ip="127.0.0.1"), "loopback address is virtual only as one port of one node"),
    (dict(ip="10.96.0.10", node="ghost"), "'ghost' is no node of the lab"),
])
def test_virtual_builder_refusals(kwargs, words):
    with pytest.raises(ValidationError, match=words):
        _lab().virtual(**kwargs)


def test_answered_by_refusals():
    lab = _lab()
    lab.expect("a", "b", "icmp", answered_by="b")
    _invalid(lab, "answered_by needs an allowed dns/http/sctp/tcp/udp check")  # those whose server records
    lab = _lab()
    lab.expect("b", "a", "http", 80, answered_by="a")
    _invalid(lab, "no http server on a port 80")
    lab = _lab()
    lab.node("c").serve("http", 80)
    lab.expect("a", "b", "http", 80, answered_by="c")
    _invalid(lab, "c is not in b's netns")


def test_loopback_targets_the_source_itself():
    lab = _lab()
    lab.expect("b", "127.0.0.1", "http", 80)
    validate(lab)
    t = lab.target("b", "127.0.0.1", "http", 80)
    assert t.node is lab.nodes["b"] and t.loopback
    lab = _lab()
    lab.expect("a", "127.0.0.1", "http", 80)
    _invalid(lab, "no http server on a loopback port 80")


def test_containers_share_a_netns_and_not_a_port():
    lab = _lab()
    side = lab.container("side", "b").serve("tcp", 7)
    lab.expect("a", "side", "tcp", 7, answered_by=side)
    validate(lab)
    assert lab.target("a", "side", "tcp", 7).ip == "10.0.0.2"
    lab.container("other", "b").serve("tcp", 7)
    _invalid(lab, r"two servers on tcp/7 in one netns \(other, side; the second bind gets EADDRINUSE\)")


def test_container_name_clashes():
    lab = _lab()
    with pytest.raises(ValidationError, match="taken by a node or a container"):
        lab.container("a", "b")
    lab.container("x", "b")
    with pytest.raises(ValidationError, match="taken by a node or a container"):
        lab.container("x", "a")


def test_machines():
    lab = _lab()
    lab.machine("m1", ["a", lab.nodes["b"]])
    assert lab.machine_of("b") == "m1"
    with pytest.raises(ValidationError, match="already in machine m1"):
        lab.machine("m2", ["b"])
    with pytest.raises(ValidationError, match="needs distinct nodes"):
        lab.machine("m3", [])


def test_hand_over_keeps_containers_machines_virtuals_and_answered_by():
    lab = _lab()
    lab.container("side", "b").serve("tcp", 7)
    lab.machine("m", ["a", "b"])
    lab.virtual("10.96.0.10", name="svc")
    lab.expect("a", "10.96.0.10", "tcp", 80, answered_by={"b", "side"})
    back = lab_from_dict(lab_to_dict(lab))
    validate(back)
    assert back.containers == lab.containers and back.machines == lab.machines and back.virtuals == lab.virtuals
    assert back.checks == lab.checks
    assert back.nodes["b"].servers == lab.nodes["b"].servers


def test_port_conflict_checks():
    lab = _lab()
    side = lab.container("side", "b").serve("tcp", 7)
    lab.container("late", "b")
    lab.expect_port_conflict("late", "tcp", 7, held_by=side)
    validate(lab)
    lab.expect_port_conflict("a", "tcp", 7, held_by="side", name="x")
    _invalid(lab, "are in different netns")
    lab = _lab()
    lab.expect_port_conflict("b", "udp", 80, held_by="b")
    _invalid(lab, "b serves no udp/80")


def test_dns_answers_records_and_nxdomain():
    from dnslib import QTYPE, RCODE, DNSRecord

    from nsbox.kinds.protocols.dns import answer as dns_answer

    zone = {"c2": "172.18.0.3"}
    got = DNSRecord.parse(dns_answer(DNSRecord.question("C2.", "A").pack(), zone))
    assert [(str(rr.rdata), rr.rtype) for rr in got.rr] == [("172.18.0.3", QTYPE.A)]
    got = DNSRecord.parse(dns_answer(DNSRecord.question("c9", "A").pack(), zone))
    assert got.header.rcode == RCODE.NXDOMAIN and not got.rr
    assert dns_answer(b"not dns", zone) is None


def test_dns_check_validation():
    lab = _lab()
    lab.expect_dns("a", "10.0.0.2", "x", None)
    _invalid(lab, "no dns server on b port 53")
    lab = _lab()
    lab.nodes["b"].serve_dns(53, {"x": "10.0.0.9"}, address="10.0.0.7")
    _invalid(lab, "binds 10.0.0.7, which is no address of this node")
    with pytest.raises(ValidationError, match="is not an IPv4 address"):
        _lab().nodes["b"].serve_dns(53, {"x": "nope"})
    lab = _lab()
    lab.nodes["b"].serve_dns(53, {"x": "10.0.0.9"}).serve("udp", 53)
    _invalid(lab, "two servers on udp/53")


def test_proxy_validation():
    lab = _lab()
    lab.nodes["a"].proxy("tcp", 8080, "10.0.0.2", 80)
    lab.expect("a", "127.0.0.1", "http", 8080, answered_by="b")  # relayed: b may answer
    validate(lab)
    lab.nodes["a"].serve("tcp", 8080)
    _invalid(lab, "docker-proxy tcp 0.0.0.0:8080: the port is taken by a")
    lab = _lab()
    lab.nodes["a"].proxy("tcp", 8080, "10.0.0.x", 80)
    _invalid(lab, "'10.0.0.x' is no address")


def test_interfaces_check():
    lab = _lab()
    lab.container("side", "b")
    lab.expect_interfaces("side", ["lo", "eth0"])
    validate(lab)
    back = lab_from_dict(lab_to_dict(lab))
    assert back.checks == lab.checks
    assert lab.checks[0].expected == "interfaces eth0, lo"
    lab.expect_interfaces("ghost", ["lo"])
    _invalid(lab, "unknown node or container 'ghost'")


def test_nft_listed_rules_and_matching():
    from nsbox.wire.nftables import listed_rules, matching

    text = ('table ip t {\n\tchain c {\n\t\ttype filter hook prerouting priority raw; policy accept;\n'
            '\t\tip daddr 10.0.0.2 iifname != "br0" counter packets 3 bytes 180 drop comment "X"\n'
            '\t\tip daddr 10.0.0.3 counter packets 0 bytes 0 accept\n\t}\n}\n')
    rules = listed_rules(text)
    assert rules == [("ip t c", 'ip daddr 10.0.0.2 iifname != "br0" drop comment "X"', 3),
                     ("ip t c", "ip daddr 10.0.0.3 accept", 0)]
    assert matching(rules, "ip t c", "ip daddr 10.0.0.2") == [0]
    assert matching(rules, "ip t c", "ip daddr 10.0.0.3") == []  # accepts: no drop rule
