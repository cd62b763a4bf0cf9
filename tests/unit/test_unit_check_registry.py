"""The registry of check kinds (nsbox/kinds/checks/) and the rule references (nsbox/kinds/ruleref.py).

Every module of the package is a registered kind (discovery, no hand list); every kind
survives the JSON hand-over unchanged, in the very form it had before the kinds were
modules; the validation messages are the ones main printed before the refactor (MESSAGES
was taken from main at d5cdc71 with the same cases: tests must not change what users read).
"""

from __future__ import annotations

import json
import pkgutil

import pytest

import nsbox.kinds.checks as checks_pkg
from nsbox.artifacts.involved import involved_nodes
from nsbox.errors import ValidationError
from nsbox.kinds.checks import KINDS, builders, kind_of, result_kinds
from nsbox.kinds.checks.listening import ListeningCheck, Socket, matches, parse_table
from nsbox.kinds.ruleref import IptablesPolicy, IptablesRule, NftRule, describe_rule, rule_ref
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.validate import validate
from nsbox.verify.external import nodes_named, select

NFT = """table inet f {
  chain fwd {
    type filter hook forward priority 0; policy accept;
    tcp dport 9 counter drop
    tcp dport 10 counter accept
  }
}
"""


def base():
    lab = Lab("t")
    host = lab.host
    host.sysctl("net.ipv4.ip_forward", 1)
    for name, net in (("a", 1), ("b", 2)):
        n = lab.node(name)
        lab.veth(n, "eth0", host, f"h{name}")
        n.address("eth0", f"10.92.{net}.2/24")
        n.route("default", via=f"10.92.{net}.1")
        host.address(f"h{name}", f"10.92.{net}.1/24")
    lab.nodes["b"].serve("tcp", 7)
    f = host.iptables("filter")
    f.append("FORWARD", "-p tcp --dport 7 -j DROP")
    f.new_chain("MINE")
    host.nftables(NFT)
    return lab


def c_drop_allow(lab):
    lab.expect("a", "b", "tcp", 7, name="x", dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 7 -j DROP"))


def c_drop_nochain(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "NOPE", "-j DROP"))


def c_drop_norule(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 8 -j DROP"))


def c_drop_policy(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "FORWARD", "policy"))


def c_drop_policy_user(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "MINE", "policy"))


def c_drop_badnode(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("zz", "filter", "FORWARD", "policy"))


def c_drop_short(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "FORWARD"))


def c_drop_notstr(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "filter", "FORWARD", 7))


def c_nft_badchain(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "nft", "f fwd", "drop"))


def c_nft_nochain(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "nft", "inet f nope", "drop"))


def c_nft_nodrop(lab):
    lab.expect("a", "b", "tcp", 7, allow=False, name="x", dropped_by=("host", "nft", "inet f fwd", "dport 10"))


def c_nft_count_nohold(lab):
    lab.expect("a", "b", "tcp", 7, name="x", counted_by=("host", "nft", "inet f fwd", "dport 11"))


def c_count_norule(lab):
    lab.expect("a", "b", "tcp", 7, name="x", counted_by=("host", "filter", "FORWARD", "-j ACCEPT"))


def c_icmp_port(lab):
    lab.expect("a", "b", "icmp", 7, name="x")


def c_no_server(lab):
    lab.expect("a", "b", "tcp", 8, name="x")


def c_link_iface(lab):
    lab.expect_link("a", "nope")


def c_link_state(lab):
    lab.expect_link("a", "eth0", "SIDEWAYS")


def c_route(lab):
    lab.expect_route("a", "not-an-ip")


def c_neigh(lab):
    lab.expect_neigh("a", "10.92.1.1", lladdr="zz")


def c_ifaces(lab):
    lab.expect_interfaces("a", ["lo", "bad/name"])


def c_bind(lab):
    lab.expect_port_conflict("a", "tcp", 7, "b")


def c_ct_node(lab):
    lab.expect_conntrack("zz", lab.expect("a", "b", "tcp", 7), "10.92.1.2")


def c_ct_of(lab):
    lab.expect_conntrack("host", lab.expect("a", "b", "tcp", 7, allow=False), "10.92.1.2")


def c_spread(lab):
    from nsbox.model.spread import SpreadCheck
    lab._add_check(SpreadCheck("s", ("nope",), 1, 1.0))



CASES = {k: v for k, v in dict(globals()).items() if k.startswith("c_")}

MESSAGES = {
    'c_drop_allow':
        "check 'x': dropped_by needs a deny check (allow=False)",
    'c_drop_nochain':
        "check 'x': dropped_by names no chain NOPE of table filter in node host",
    'c_drop_norule':
        "check 'x': node host has no rule '-A FORWARD -p tcp --dport 8 -j DROP' in table filter",
    'c_drop_policy':
        "check 'x': the policy of filter FORWARD in node host is not DROP",
    'c_drop_policy_user':
        "check 'x': filter MINE in node host is no builtin chain: it has no policy",
    'c_drop_badnode':
        "check 'x': dropped_by names no chain FORWARD of table filter in node zz",
    'c_drop_short':
        "check 'x': dropped_by is (node, table, chain, rule spec or 'policy')",
    'c_drop_notstr':
        "check 'x': dropped_by is (node, table, chain, rule spec or 'policy')",
    'c_nft_badchain':
        "check 'x': an nft dropped_by names its chain as 'FAMILY TABLE CHAIN' (e.g. 'ip docker-bridges raw-PREROUTING'), not 'f fwd'",
    'c_nft_nochain':
        "check 'x': node host has no nftables chain inet f nope",
    'c_nft_nodrop':
        "check 'x': no drop rule in nftables chain inet f fwd of node host holds 'dport 10'",
    'c_nft_count_nohold':
        "check 'x': no rule in nftables chain inet f fwd of node host holds 'dport 11'",
    'c_count_norule':
        "check 'x': node host has no rule '-A FORWARD -j ACCEPT' in table filter",
    'c_icmp_port':
        "check 'x': icmp takes no port",
    'c_no_server':
        "check 'x': no http/tcp server on b port 8 (a published port or Service: declare it with lab.virtual)",
    'c_link_iface':
        "check 'link a/nope UP': nope is no interface of node 'a'",
    'c_link_state':
        "check 'link a/eth0 SIDEWAYS': unknown link state 'SIDEWAYS' (UNKNOWN, NOTPRESENT, DOWN, LOWERLAYERDOWN, TESTING, DORMANT, UP)",
    'c_route':
        "check 'route a: not-an-ip': dst 'not-an-ip' is no IP address",
    'c_neigh':
        "check 'neigh a: 10.92.1.1': lladdr 'zz' is not a MAC address such as 02:42:ac:11:00:02",
    'c_ifaces':
        "check 'interfaces of a': interface name 'bad/name' may not contain '/', ':', NUL or spaces",
    'c_bind':
        "check 'tcp/7 a port conflict': a and b are in different netns (a, b); a port conflicts only within one",
    'c_ct_node':
        "check 'conntrack zz: tcp/7 a->b': unknown node 'zz'",
    'c_ct_of':
        "check 'conntrack host: tcp/7 a->b': 'tcp/7 a->b' is not an allowed http/icmp/tcp/udp check",  # the protocol registry's list
    'c_spread':
        "check 's': its probe 'nope' is no reach check",
}


def test_every_module_of_the_package_is_a_registered_kind():
    modules = {m.name for m in pkgutil.iter_modules(checks_pkg.__path__) if not m.name.startswith("_")}
    assert modules == set(KINDS) == set(result_kinds())
    assert {"reach", "conntrack", "link", "bind", "interfaces", "route", "neigh", "spread", "listening"} <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.cls.__module__ == f"nsbox.kinds.checks.{name}"  # the dataclass lives in its module


def test_builders_are_found_on_the_lab_by_name():
    assert {"expect_route", "expect_neigh", "expect_spread", "expect_listening"} <= set(builders())
    lab = base()
    c = lab.expect_listening("b", "tcp", 7)  # no method on Lab: the kind module's builder
    assert isinstance(c, ListeningCheck) and lab.checks[-1] is c
    with pytest.raises(AttributeError):
        lab.expect_no_such_thing  # noqa: B018


def _every_kind() -> Lab:
    """A lab holding at least one check of every kind."""
    lab = base()
    r = lab.expect("a", "b", "tcp", 7, answered_by="b", seen_from=["10.92.1.2", "10.92.2.1"])
    lab.expect("a", "b", "tcp", 7, allow=False, name="dropped", deny="timeout",
               dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 7 -j DROP"))
    lab.expect("a", "b", "icmp", name="nft-counted", counted_by=("host", "nft", "inet f fwd", "dport 9"))
    lab.expect_conntrack("host", r, "10.92.1.2")
    lab.expect_link("a", "eth0")
    lab.expect_port_conflict("b", "tcp", 7, "b")
    lab.expect_interfaces("a", ["lo", "eth0"])
    lab.expect_route("a", "10.92.2.2", via="10.92.1.1", dev="eth0")
    lab.expect_neigh("a", "10.92.1.1", lladdr="02:00:00:00:00:01")
    lab.expect_spread("a", "b", 7, proto="tcp", probes=2, at_least=1, answered_by="b")
    lab.expect_listening("b", "tcp", 7, address="10.92.2.2")
    return lab


def test_every_kind_survives_the_hand_over():
    lab = _every_kind()
    validate(lab)
    assert {kind_of(c).name for c in lab.checks} == set(KINDS), "a kind without a round-trip example here"
    data = json.loads(json.dumps(lab_to_dict(lab)))
    again = lab_from_dict(data)
    assert again.checks == lab.checks
    assert [type(c) for c in again.checks] == [type(c) for c in lab.checks]
    assert json.loads(json.dumps(lab_to_dict(again))) == data


def test_the_json_form_of_a_check_is_unchanged():
    """dropped_by and counted_by stay lists of four strings, answered_by a sorted list."""
    lab = _every_kind()
    by = {c["name"]: c for c in json.loads(json.dumps(lab_to_dict(lab)))["checks"]}
    assert by["dropped"] == {
        "type": "reach", "name": "dropped", "src": "a", "dst": "b", "proto": "tcp", "port": 7, "allow": False,
        "seen_from": None, "dropped_by": ["host", "filter", "FORWARD", "-p tcp --dport 7 -j DROP"],
        "answered_by": None, "query": None, "answer": None, "family": None, "counted_by": None,
        "deny": "timeout", "size": None, "df": False}
    assert by["nft-counted"]["counted_by"] == ["host", "nft", "inet f fwd", "dport 9"]
    assert by["tcp/7 a->b"]["answered_by"] == ["b"]
    assert by["conntrack host: tcp/7 a->b"] == {"type": "conntrack", "name": "conntrack host: tcp/7 a->b",
                                                 "node": "host", "of": "tcp/7 a->b", "reply_dst": "10.92.1.2",
                                                 "reply_src": None, "reply_sport": None}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_messages_are_unchanged(case):
    lab = base()
    with pytest.raises(ValidationError) as e:
        CASES[case](lab)
        validate(lab)
    assert str(e.value) == MESSAGES[case]


def test_rule_refs_are_tagged_variants_that_stay_tuples():
    rule = rule_ref(("host", "filter", "FORWARD", "-j DROP"))
    policy = rule_ref(["host", "filter", "FORWARD", "policy"])
    nft = rule_ref(("host", "nft", "inet f fwd", "drop"))
    assert (type(rule), type(policy), type(nft)) == (IptablesRule, IptablesPolicy, NftRule)
    assert rule == ("host", "filter", "FORWARD", "-j DROP") and rule[1] == "filter" and rule.node == "host"
    # descriptions as reports printed them before (describe_rule on the 4-tuple)
    assert rule.describe() == "host filter -A FORWARD -j DROP"
    assert policy.describe() == "host filter FORWARD policy"
    assert nft.describe() == describe_rule(("host", "nft", "inet f fwd", "drop")) == "host nft inet f fwd: drop"
    with pytest.raises(ValueError):
        rule_ref(("host", "filter", "FORWARD"))
    lab = base()
    c = lab.expect("a", "b", "tcp", 7, allow=False, dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 7 -j DROP"))
    assert isinstance(c.dropped_by, IptablesRule)
    assert c.expected == "deny, dropped by host filter -A FORWARD -p tcp --dport 7 -j DROP"
    assert rule_ref(("host", "nft", "inet f fwd", "dport 9")).exists(lab, 4)
    assert not rule_ref(("host", "nft", "inet f fwd", "dport 10")).exists(lab, 4)  # accepts: no drop


def test_involved_and_external_nodes_come_from_the_kinds():
    lab = _every_kind()
    by = {c.name: c for c in lab.checks}
    assert involved_nodes(lab, by["tcp/7 listening in b"]) == ["b"]
    # main's nodes_named did not know InterfacesCheck (nor a counted_by rule's node)
    assert nodes_named(lab, [by["interfaces of a"]]) == {"a"}
    assert nodes_named(lab, [by["nft-counted"]]) == {"a", "b", "host"}
    # main's involved_nodes crashed on a spread check (it fell through to the conntrack branch)
    spread = next(c for c in lab.checks if kind_of(c).name == "spread")
    assert involved_nodes(lab, spread) == ["a", "b", "host"]
    # selecting a spread check keeps the probes it reads, as a conntrack check keeps its connection
    kept = select(lab, [spread.name])
    assert [c.name for c in kept.checks] == [*spread.probes, spread.name]


PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0200000A:0016 0300000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
"""
PROC_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:0007 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_the_proc_tables_are_read_as_the_kernel_writes_them():
    assert parse_table("tcp", PROC_TCP, False) == [Socket("tcp", "127.0.0.1", 8080)]  # the ESTABLISHED one is not
    assert parse_table("tcp", PROC_TCP6, True) == [Socket("tcp", "::", 7)]
    c = ListeningCheck("x", "a", "tcp", 7, address="10.0.0.2")
    assert matches(Socket("tcp", "::", 7), c) and matches(Socket("tcp", "0.0.0.0", 7), c)
    assert not matches(Socket("tcp", "10.0.0.3", 7), c) and not matches(Socket("udp", "::", 7), c)
    assert matches(Socket("tcp", "::ffff:10.0.0.2", 7), c)


@pytest.mark.parametrize("kwargs, message", [
    (dict(proto="sctp", port=7), "a listening socket is tcp or udp, not 'sctp'"),
    (dict(proto="tcp", port=0), "port 0 out of range 1-65535"),
    (dict(proto="tcp", port=7, address="nope"), "address 'nope' is no IP address"),
    (dict(proto="tcp", port=7, listening="yes"), "listening is True or False"),
])
def test_bad_listening_checks_are_refused_when_written(kwargs, message):
    lab = base()
    with pytest.raises(ValidationError, match=message):
        lab.expect_listening("a", **kwargs)
    with pytest.raises(ValidationError, match="unknown node or container .zz."):
        lab.expect_listening("zz", "tcp", 7)
