"""node.ipset (nsbox/model/ipsets.py): what ipset would refuse is refused with one line
before the kernel is touched; explain shows the `ipset create/add` lines before the rules;
the jail's JSON hand-over keeps the sets and checks them again."""

import pytest

from nsbox.errors import RecipeError, ValidationError
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.plan.explain import script as explain
from nsbox.validate import validate
from tests.support import paths


def gate() -> Lab:
    lab = Lab("gate")
    lab.require("ipset")
    n = lab.node("srv")
    n.ipset("allowed", "hash:ip", ["10.9.0.2"])
    n.ipset("nets", "hash:net", ["10.9.0.0/24", "10.9.0.8/29 nomatch", "10.9.1.1/32"])
    n.ipset("ports", "hash:ip,port", ["10.9.0.2,80", "10.9.0.3,udp:53"])
    n.iptables("filter").append("INPUT", "-m set --match-set allowed src -j ACCEPT")
    n.iptables("filter").append("INPUT", "-m set ! --match-set nets dst -j DROP")
    n.iptables("filter").append("INPUT", "-m set --match-set ports dst,dst -j ACCEPT")
    lab.expect_interfaces(n, ["lo"])
    return lab


def test_entries_are_kept_as_ipset_lists_them():
    lab = gate()
    validate(lab)
    sets = lab.nodes["srv"].ipsets
    assert sets["nets"].entries == ["10.9.0.0/24", "10.9.0.8/29 nomatch", "10.9.1.1"]
    assert sets["ports"].entries == ["10.9.0.2,tcp:80", "10.9.0.3,udp:53"]


def test_explain_creates_the_sets_before_the_rules_that_match_them():
    text = explain(gate())
    create = text.index("ip netns exec srv ipset create allowed hash:ip family inet")
    assert "ip netns exec srv ipset add nets 10.9.0.8/29 nomatch" in text
    assert create < text.index("-A INPUT -m set --match-set allowed src -j ACCEPT")


@pytest.mark.parametrize("args,msg", [
    (("a b", "hash:ip", []), "bad ipset name"),
    (("x" * 32, "hash:ip", []), "bad ipset name"),
    (("-x", "hash:ip", []), "bad ipset name"),
    (("s", "list:set", []), "type must be one of"),
    (("s", "hash:ip", ["10.0.0.0/8"]), "is no IPv4 address"),
    (("s", "hash:net", ["10.0.0.1/8"]), "host bits zero"),
    (("s", "hash:net", ["0.0.0.0/0"]), "does not take a /0"),
    (("s", "hash:ip", ["10.0.0.1 nomatch"]), "nomatch is for hash:net"),
    (("s", "hash:ip,port", ["10.0.0.1"]), "needs ADDRESS,PORT"),
    (("s", "hash:ip,port", ["10.0.0.1,icmp:8"]), "port must be"),
    (("s", "hash:ip", ["10.0.0.1", "10.0.0.1"]), "given twice"),
    (("s", "hash:ip", ["fd00::1"]), "is not IPv4"),
    (("s", "hash:ip", "10.0.0.1"), "entries must be a list"),
])
def test_bad_sets_are_refused(args, msg):
    with pytest.raises(ValidationError, match=msg):
        Lab("x").node("n").ipset(*args)


def test_a_set_defined_twice_is_refused():
    n = Lab("x").node("n")
    n.ipset("s", "hash:ip")
    with pytest.raises(ValidationError, match="defined twice"):
        n.ipset("s", "hash:net")


def test_rules_must_match_a_set_of_their_node_and_family():
    lab = gate()
    lab.nodes["srv"].iptables("filter").append("FORWARD", "-m set --match-set other src -j DROP")
    with pytest.raises(ValidationError, match="matches ipset other, which the node does not have"):
        validate(lab)
    lab = gate()
    lab.nodes["srv"].ipset("six", "hash:ip", ["fd00::1"], family="inet6")
    lab.nodes["srv"].iptables("filter").append("FORWARD", "-m set --match-set six src -j DROP")
    with pytest.raises(ValidationError, match="family inet6, an IPv4 rule needs inet"):
        validate(lab)
    lab = gate()
    lab.nodes["srv"].iptables("filter").append("FORWARD", "-m set --match-set ports src -j DROP")
    with pytest.raises(ValidationError, match="needs 2 of src/dst"):
        validate(lab)


def test_sets_need_the_ipset_feature_declared():
    lab = gate()
    lab.requires.discard("ipset")
    with pytest.raises(ValidationError, match=r'lab.require\("ipset"\)'):
        validate(lab)


def test_an_entry_edited_after_the_builder_is_checked_again():
    lab = gate()
    lab.nodes["srv"].ipsets["allowed"].entries.append("not-an-ip")
    with pytest.raises(ValidationError, match="is no IPv4 address"):
        validate(lab)


def test_the_jail_hand_over_keeps_and_rechecks_the_sets():
    lab = gate()
    back = lab_from_dict(lab_to_dict(lab))
    assert {k: (s.type, s.entries) for k, s in back.nodes["srv"].ipsets.items()} == \
        {k: (s.type, s.entries) for k, s in lab.nodes["srv"].ipsets.items()}
    d = lab_to_dict(lab)
    d["nodes"][-1]["ipsets"][0]["entries"] = ["10.0.0.0/8"]
    with pytest.raises((ValidationError, RecipeError)):
        lab_from_dict(d)


def test_kube_router_sync_installs_through_the_model():
    """Rendered.install: kube-router's sets become node.ipset objects and its rules the node's
    filter table, in the order iptables would hold them after its -A/-I lines."""
    from pathlib import Path

    from nsbox.kinds.firewalls.xtables import restore_text
    from nsbox.kits.netpol.cases import Scenario, load_cases
    from nsbox.kits.netpol.kuberouter import _matches_first, render
    from nsbox.model.rules import parse_rule

    case = {c.id: c for c in load_cases(paths.DATA / "netpol" / "cases.json")}[
        "allow-from-podselector-same-ns"]
    s = Scenario(case)
    for _ in s.steps():
        pass
    r = render(s.cluster)
    lab = Lab("kr")
    lab.require("ipset")
    node = lab.node("node")
    r.install(node)
    lab.expect_interfaces(node, ["lo"])
    validate(lab)
    assert {k: sorted(v.entries) for k, v in node.ipsets.items()} == \
        {k: sorted(v.entries) for k, v in r.ipsets.items()}
    # replay the -A/-I lines by hand: the chains' final order
    want: dict[str, list[str]] = {}
    for line in r.rules:
        op, chain, rest = line.split(" ", 2)
        if op == "-I":
            pos, rest = rest.split(" ", 1)
            want.setdefault(chain, []).insert(int(pos) - 1, rest)
        else:
            want.setdefault(chain, []).append(rest)
    text = restore_text(node.firewall, 4)
    for chain, rules in want.items():
        got = [ln.split(" ", 2)[2] for ln in text.splitlines() if ln.startswith(f"-A {chain} ")]
        assert len(got) == len(rules), chain
        assert got == [parse_rule(_matches_first(w)).render() for w in rules], chain
