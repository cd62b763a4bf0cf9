"""Firewall / Table: chains, policies, rules and iptables-save order, no kernel."""

import pytest

from nsbox.errors import ValidationError
from nsbox.model.firewall import BUILTIN_CHAINS, Firewall, Table


def test_table_starts_with_its_builtin_chains_in_kernel_order():
    for name, chains in BUILTIN_CHAINS.items():
        t = Table(name)
        assert tuple(t.chains) == chains
        assert all(c.builtin and c.policy is None and not c.rules for c in t.chains.values())
        assert t.is_empty


def test_new_chain_twice_is_an_error():
    t = Table("filter").new_chain("DOCKER")
    with pytest.raises(ValidationError, match="DOCKER already exists"):
        t.new_chain("DOCKER")


def test_new_chain_named_like_a_builtin_is_an_error():
    with pytest.raises(ValidationError, match="already exists"):
        Table("nat").new_chain("POSTROUTING")


@pytest.mark.parametrize("name", ["", "A" * 29, "-X", "TWO WORDS"])
def test_bad_chain_names(name):
    with pytest.raises(ValidationError, match="bad chain name"):
        Table("filter").new_chain(name)


def test_chain_name_of_28_characters_is_fine():
    t = Table("filter").new_chain("K" * 28)
    assert not t.chains["K" * 28].builtin


def test_policy_on_builtin_chain():
    t = Table("filter").policy("FORWARD", "DROP")
    assert t.chains["FORWARD"].policy == "DROP"
    assert not t.is_empty


def test_policy_on_user_chain_is_an_error():
    t = Table("filter").new_chain("DOCKER")
    with pytest.raises(ValidationError, match="only builtin chains have a policy"):
        t.policy("DOCKER", "DROP")


@pytest.mark.parametrize("target", ["REJECT", "RETURN", "drop", "DOCKER"])
def test_policy_must_be_accept_or_drop(target):
    with pytest.raises(ValidationError, match="ACCEPT or DROP"):
        Table("filter").policy("INPUT", target)


def test_policy_on_unknown_chain_is_an_error():
    with pytest.raises(ValidationError, match="no chain PREROUTING in table filter"):
        Table("filter").policy("PREROUTING", "DROP")


def test_append_to_unknown_chain_is_an_error():
    with pytest.raises(ValidationError, match="no chain DOCKER in table filter"):
        Table("filter").append("DOCKER", "-j ACCEPT")


def test_append_parses_the_rule():
    t = Table("filter")
    with pytest.raises(ValidationError, match="unknown protocol"):
        t.append("INPUT", "-p bogus -j ACCEPT")
    assert t.chains["INPUT"].rules == []


def test_unknown_table_is_an_error():
    with pytest.raises(ValidationError, match="unknown iptables table 'security'"):
        Firewall().table("security")


def test_firewall_table_is_created_once():
    fw = Firewall()
    assert fw.table("nat") is fw.table("nat")


def test_save_lines_builtins_first_then_user_chains_sorted():
    t = Table("nat")
    for name in ("KUBE-SERVICES", "DOCKER", "KUBE-MARK-MASQ"):   # created out of order
        t.new_chain(name)
    t.append("KUBE-SERVICES", "-j KUBE-MARK-MASQ")
    t.append("POSTROUTING", "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
    t.append("DOCKER", "-i docker0 -j RETURN")
    t.append("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    t.append("KUBE-MARK-MASQ", "-j MARK --set-xmark 0x4000/0x4000")
    t.append("PREROUTING", "-j KUBE-SERVICES")
    assert t.save_lines() == [
        ":PREROUTING ACCEPT",
        ":INPUT ACCEPT",
        ":OUTPUT ACCEPT",
        ":POSTROUTING ACCEPT",
        ":DOCKER -",
        ":KUBE-MARK-MASQ -",
        ":KUBE-SERVICES -",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A PREROUTING -j KUBE-SERVICES",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A DOCKER -i docker0 -j RETURN",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-SERVICES -j KUBE-MARK-MASQ",
    ]


def test_save_lines_show_policy_and_normalized_rules():
    t = Table("filter").policy("FORWARD", "DROP")
    t.append("FORWARD", "-d 172.17.0.2 -j ACCEPT")
    assert t.save_lines() == [":INPUT ACCEPT", ":FORWARD DROP", ":OUTPUT ACCEPT",
                              "-A FORWARD -d 172.17.0.2/32 -j ACCEPT"]


def test_used_tables_in_iptables_save_order_and_skip_empty_ones():
    fw = Firewall()
    fw.table("filter").append("INPUT", "-j ACCEPT")
    fw.table("mangle")                                  # touched but empty
    fw.table("raw").append("PREROUTING", "-j ACCEPT")
    fw.table("nat").new_chain("DOCKER")
    assert [t.name for t in fw.used_tables()] == ["raw", "nat", "filter"]


def test_no_rules_needs_no_conntrack():
    fw = Firewall()
    fw.table("nat")                                     # an empty nat table loads nothing
    fw.table("filter").policy("FORWARD", "DROP").append("FORWARD", "-i docker0 -j ACCEPT")
    assert not fw.needs_conntrack


def test_nat_rule_needs_conntrack():
    fw = Firewall()
    fw.table("nat").append("POSTROUTING", "-s 10.0.0.0/8 -j MASQUERADE")
    assert fw.needs_conntrack


def test_nat_user_chain_alone_needs_conntrack():
    fw = Firewall()
    fw.table("nat").new_chain("DOCKER")
    assert fw.needs_conntrack


@pytest.mark.parametrize("spec", [
    "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-m state --state ESTABLISHED -j ACCEPT",
])
def test_conntrack_match_in_filter_needs_conntrack(spec):
    fw = Firewall()
    fw.table("filter").append("FORWARD", spec)
    assert fw.needs_conntrack


def test_conntrack_match_in_user_chain_needs_conntrack():
    fw = Firewall()
    fw.table("filter").new_chain("DOCKER-CT").append("DOCKER-CT", "-o docker0 -m conntrack --ctstate RELATED -j ACCEPT")
    assert fw.needs_conntrack


@pytest.mark.parametrize("table, spec", [
    ("mangle", "-m connmark --mark 0x1 -j ACCEPT"),
    ("mangle", "-j CONNMARK --set-xmark 0x1/0xffffffff"),
])
def test_other_conntrack_users_need_conntrack(table, spec):
    fw = Firewall()
    fw.table(table).append("PREROUTING", spec)   # parses fine: the bug is in needs_conntrack
    assert fw.needs_conntrack


def test_restore_text_is_one_transaction_per_table():
    from nsbox.kinds.firewalls.xtables import restore_text
    from nsbox.model import Firewall

    fw = Firewall()
    fw.table("nat").append("POSTROUTING", "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
    fw.table("filter").policy("FORWARD", "DROP")
    text = restore_text(fw)
    assert text.splitlines()[0] == "*nat" and text.count("COMMIT") == 2
    assert "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" in text
    assert ":FORWARD DROP" in text
