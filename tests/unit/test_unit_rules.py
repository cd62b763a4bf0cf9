"""parse_rule / Rule.render: iptables rule specs as data, no kernel."""

import pytest

from nsbox.errors import ValidationError
from nsbox.model.rules import Module, Negatable, Option, parse_rule

# Docker 29, iptables backend (tests/data/docker29/): the part after `-A CHAIN`.
DOCKER_29_RULES = [
    # raw
    "-d 172.17.0.2/32 ! -i docker0 -j DROP",
    # filter
    "-j DOCKER-USER",
    "-j DOCKER-FORWARD",
    "-d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
    "! -i docker0 -o docker0 -j DROP",
    "-o docker0 -j DOCKER",
    "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-j DOCKER-CT",
    "-j DOCKER-INTERNAL",
    "-j DOCKER-BRIDGE",
    "-i docker0 -j ACCEPT",
    # nat
    "-m addrtype --dst-type LOCAL -j DOCKER",
    "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
    # variants listed in 1a
    "-i docker0 -o docker0 -j DROP",
    "-i docker0 ! -o docker0 -j ACCEPT",
    "! -s 172.18.0.0/16 -o br-X -j DROP",
    "! -d 172.18.0.0/16 -i br-X -j DROP",
    "-o docker0 -m addrtype --src-type LOCAL -j MASQUERADE",
    "-s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
    "-d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP",
    "-o br -p icmp -j ACCEPT",
]

# kube-proxy iptables mode sample (dataplane.md 4a) whose text is what iptables-save prints.
KUBE_PROXY_RULES = [
    '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ',
    "-j KUBE-SVC-CDGGSHYLG3RE2FKL",
    "-j MARK --set-xmark 0x4000/0x4000",
    "-m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-j MARK --set-xmark 0x4000/0x0",
    '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    '-d 10.96.100.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80'
    " -j KUBE-SVC-CDGGSHYLG3RE2FKL",
    '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
    " -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    '! -s 10.244.0.0/16 -d 10.96.100.10/32 -p tcp -m comment --comment "default/web:http cluster IP"'
    " -m tcp --dport 80 -j KUBE-MARK-MASQ",
    '-m comment --comment "default/web:http -> 10.244.1.2:8080" -m statistic --mode random'
    " --probability 0.33333333349 -j KUBE-SEP-UIQK3OSOSTRHRPBX",
    '-m comment --comment "default/web:http -> 10.244.1.3:8080" -m statistic --mode random'
    " --probability 0.50000000000 -j KUBE-SEP-2AZ33KU3V5PGPQZH",
    '-m comment --comment "default/web:http -> 10.244.2.2:8080" -j KUBE-SEP-4EX2N4PG4ASNZOBF',
    # affinity, as iptables-save reorders it
    "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-Y --mask 255.255.255.255 --rsource -j KUBE-SEP-Y",
]

# The sample's seven lines with `--comment default/web:http`, as real iptables-save
# (v1.8.9 legacy, checked in a throwaway namespace) prints them: it quotes any
# value holding a character outside [A-Za-z0-9_-], so '/' and ':' get quotes.
KUBE_PROXY_SLASH_COMMENT_RULES = [
    '-p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-CDGGSHYLG3RE2FKL',
    '-s 10.244.1.3/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ',
    '-p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.3:8080',
    '-s 10.244.2.2/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ',
    '-p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.2:8080',
    '-s 10.244.1.2/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ',
    '-p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.2:8080',
]


@pytest.mark.parametrize("line", DOCKER_29_RULES)
def test_docker_29_rule_round_trips(line):
    assert parse_rule(line).render() == line


@pytest.mark.parametrize("line", KUBE_PROXY_RULES)
def test_kube_proxy_rule_round_trips(line):
    assert parse_rule(line).render() == line


@pytest.mark.parametrize("quoted", KUBE_PROXY_SLASH_COMMENT_RULES)
def test_unquoted_comment_as_in_reference_parses_like_quoted(quoted):
    # dataplane.md 4a writes these comments without quotes; both spellings mean the same rule.
    assert parse_rule(quoted.replace('"default/web:http"', "default/web:http")) == parse_rule(quoted)


def test_comment_with_slash_renders_quoted_like_iptables_save():
    for line in KUBE_PROXY_SLASH_COMMENT_RULES:
        assert parse_rule(line).render() == line


def test_plain_word_comment_stays_unquoted_like_iptables_save():
    line = "-s 10.0.0.0/8 -m comment --comment plain_word-1 -j RETURN"
    assert parse_rule(line).render() == line


def test_rule_structure():
    r = parse_rule("-s 172.17.0.0/16 ! -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j MASQUERADE --random-fully")
    assert r.src == Negatable("172.17.0.0/16")
    assert r.out_iface == Negatable("docker0", invert=True)
    assert r.in_iface is None and r.dst is None and r.proto is None
    assert r.matches == (Module("conntrack", (Option("ctstate", "RELATED,ESTABLISHED"),)),)
    assert r.target == Module("MASQUERADE", (Option("random-fully"),))
    assert r.jumps_to == "MASQUERADE"


def test_inverted_match_option():
    r = parse_rule("-m mark ! --mark 0x4000/0x4000 -j RETURN")
    assert r.matches[0].options == (Option("mark", "0x4000/0x4000", invert=True),)


def test_rule_without_target_has_no_jump():
    r = parse_rule("-p tcp -m tcp --dport 22")
    assert r.target is None and r.jumps_to is None
    assert r.render() == "-p tcp -m tcp --dport 22"


@pytest.mark.parametrize("spec, rendered", [
    ("-d 172.17.0.2 -j DROP", "-d 172.17.0.2/32 -j DROP"),
    ("-s 172.17.0.5/16 -j ACCEPT", "-s 172.17.0.0/16 -j ACCEPT"),
    ("! -s 10.244.1.7/255.255.0.0 -j ACCEPT", "! -s 10.244.0.0/16 -j ACCEPT"),
    ("! -s 0.0.0.0/0 -j ACCEPT", "! -s 0.0.0.0/0 -j ACCEPT"),
])
def test_addresses_normalize_like_iptables(spec, rendered):
    assert parse_rule(spec).render() == rendered


@pytest.mark.parametrize("spec", ["-d 0.0.0.0/0 -j ACCEPT", "-p all -j ACCEPT"])
def test_match_anything_selectors_are_not_rendered(spec):
    assert parse_rule(spec).render() == "-j ACCEPT"


@pytest.mark.parametrize("spec, order", [
    # recipe order -> iptables-save order: -s -d -i -o -p, matches, target
    ("-p tcp -o eth0 -i docker0 -d 10.0.0.1 -s 10.0.0.0/8 -m tcp --dport 80 -j ACCEPT",
     "-s 10.0.0.0/8 -d 10.0.0.1/32 -i docker0 -o eth0 -p tcp -m tcp --dport 80 -j ACCEPT"),
    ("--protocol udp --in-interface eth0 --source 10.1.2.3 --jump DROP",
     "-s 10.1.2.3/32 -i eth0 -p udp -j DROP"),
])
def test_render_uses_iptables_save_order(spec, order):
    assert parse_rule(spec).render() == order


def test_spec_is_kept_but_not_compared():
    a = parse_rule("-d 172.17.0.2 -j DROP")
    b = parse_rule("-d 172.17.0.2/32 -j DROP")
    assert a.spec == "-d 172.17.0.2 -j DROP"
    assert a == b


@pytest.mark.parametrize("spec, words", [
    ("-s 10.0.0.300/8 -j ACCEPT", "bad address"),
    ("-d not-an-ip -j ACCEPT", "bad address"),
    ("-s 10.0.0.0/33 -j ACCEPT", "bad address"),
    ("-p tcpp -j ACCEPT", "unknown protocol"),
    ("-p gre -j ACCEPT", "unknown protocol"),
    ("-j ACCEPT !", "dangling"),
    ("-s 10.0.0.0/8 !", "dangling"),
    ("! -j ACCEPT", "'!' before -j"),
    ("! -m tcp --dport 80 -j ACCEPT", "'!' before -m"),
    ("--dport 80 -j ACCEPT", "outside -m/-j"),
    ("-p all --dport 80 -j ACCEPT", "outside -m/-j"),  # no protocol match to load implicitly
    ("-j ACCEPT -j DROP", "target"),
    ("-j ACCEPT -m tcp", "after the target"),
    ("-j ACCEPT -s 10.0.0.0/8", "-s after the target"),
    ("-j ACCEPT -o eth0", "-o after the target"),
    ("-i abcdefghijklmnop -j ACCEPT", "bad interface name"),   # 16 bytes
    ("-o vethé123456789ab -j ACCEPT", "bad interface name"),  # 15 chars, 16 bytes
    ("-i eth0;rm -j ACCEPT", "bad interface name"),
    ("-s 10.0.0.0/8 -s 10.0.0.0/16 -j ACCEPT", "twice"),
    ("-m tcp --dport", "needs a value"),
    ("-j", "needs a value"),
    ("-j ACCEPT extra", "unexpected"),
    ('-m comment --comment "unterminated -j ACCEPT', "cannot parse"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_bad_rules_raise_one_line_validation_error(spec, words):
    with pytest.raises(ValidationError) as e:
        parse_rule(spec)
    msg = str(e.value)
    assert words in msg
    assert "\n" not in msg


def test_interface_name_of_15_bytes_and_wildcard_accepted():
    assert parse_rule("-i abcdefghijklmno -j ACCEPT").in_iface == Negatable("abcdefghijklmno")
    assert parse_rule("-o veth+ -j ACCEPT").render() == "-o veth+ -j ACCEPT"
    assert parse_rule("-o flannel.1 -j ACCEPT").render() == "-o flannel.1 -j ACCEPT"


def test_validation_error_is_a_usage_error_with_exit_code_2():
    with pytest.raises(ValidationError) as e:
        parse_rule("-p nope -j ACCEPT")
    assert e.value.exit_code == 2


def test_ct_notrack_round_trips():
    line = "-p udp -m udp --dport 53 -j CT --notrack"
    assert parse_rule(line).render() == line


def test_tcp_flags_as_iptables_save_prints_them_round_trip():
    line = "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j RETURN"
    assert parse_rule(line).render() == line


# Extensions whose options iptables-save prints differently from how agents write them (seen
# in the kernel: tests/kernel/test_kernel_every_recipe.py compares every shipped recipe's model
# with iptables-save; network-policy and service-clusterip's sessionAffinity found these).
@pytest.mark.parametrize("family, written, saved", [
    (4, "-p icmp -m icmp --icmp-type echo-request -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    (4, "-p icmp -m icmp --icmp-type port-unreachable -j ACCEPT", "-p icmp -m icmp --icmp-type 3/3 -j ACCEPT"),
    (4, "-j MARK --set-mark 0/0x10000", "-j MARK --set-xmark 0x0/0x10000"),
    (4, "-j MARK --set-mark 0x4000", "-j MARK --set-xmark 0x4000/0xffffffff"),
    (4, "-j MARK --set-mark 0x1/0x2", "-j MARK --set-xmark 0x1/0x3"),
    (4, "-m limit --limit 10/minute --limit-burst 10 -j ACCEPT", "-m limit --limit 10/min --limit-burst 10 -j ACCEPT"),
    (4, "-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
    (6, "-j REJECT", "-j REJECT --reject-with icmp6-port-unreachable"),
    (4, "-m recent --name X --set -j ACCEPT", "-m recent --set --name X --mask 255.255.255.255 --rsource -j ACCEPT"),
    (4, "-m recent --name X --rcheck --seconds 10800 --reap -j ACCEPT",
     "-m recent --rcheck --seconds 10800 --reap --name X --mask 255.255.255.255 --rsource -j ACCEPT"),
    (6, "-m recent --name X --set -j ACCEPT",
     "-m recent --set --name X --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -j ACCEPT"),
])
def test_extension_options_are_held_as_iptables_save_prints_them(family, written, saved):
    from nsbox.model.rules import parse_rule

    assert parse_rule(written, family).render() == saved
    assert parse_rule(saved, family).render() == saved  # what the kernel lists reads back unchanged
