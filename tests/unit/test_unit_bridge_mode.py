"""The bridge-mode recipe's model: valid at any size, and its iptables read like Docker 29's."""

import pytest

from nsbox import recipe
from nsbox.errors import UsageError
from nsbox.model import HOST
from nsbox.validate import validate

from tests.support.golden import docker29_rules

GOLDEN = docker29_rules(2)
GOLDEN_FILTER = GOLDEN["filter"]
GOLDEN_NAT = GOLDEN["nat"]
# raw: one line per endpoint; the golden has 172.17.0.2 only.
GOLDEN_RAW_ENDPOINT = "-A PREROUTING -d {ip}/32 ! -i docker0 -j DROP"


@pytest.fixture(scope="module")
def bridge_mode():
    return recipe.get("bridge-mode")


@pytest.fixture(scope="module")
def lab2(bridge_mode):
    return bridge_mode.build()


@pytest.fixture(scope="module")
def lab1000(bridge_mode):
    return bridge_mode.build({"containers": "1000"})


def test_default_model_validates(lab2):
    validate(lab2)
    assert sorted(lab2.nodes) == ["c1", "c2", HOST, "internet", "lan"]


def test_thousand_container_model_validates(lab1000):
    validate(lab1000)
    assert len(lab1000.nodes) == 1003  # host, internet, lan and the containers


def test_thousand_containers_get_distinct_addresses_and_short_veth_names(lab1000):
    host_ends = [p.b_name for p in lab1000.veths if p.b_node == HOST]
    assert len(host_ends) == len(set(host_ends)) == 1000
    assert all(len(n.encode()) <= 15 and n.startswith("veth") for n in host_ends)
    assert all(lab1000.host.interfaces[n].master == "docker0" for n in host_ends)
    assert lab1000.nodes["c1"].primary_ip == "172.17.0.2"
    assert lab1000.nodes["c255"].primary_ip == "172.17.1.0"
    assert lab1000.nodes["c1000"].primary_ip == "172.17.3.233"


def test_filter_table_matches_docker_29(lab2):
    assert lab2.host.iptables("filter").save_lines() == GOLDEN_FILTER


def test_nat_table_matches_docker_29(lab2):
    assert lab2.host.iptables("nat").save_lines() == GOLDEN_NAT


def test_raw_table_drops_direct_routing_per_endpoint(lab2):
    rules = [line for line in lab2.host.iptables("raw").save_lines() if line.startswith("-A")]
    assert rules == [GOLDEN_RAW_ENDPOINT.format(ip="172.17.0.2"), GOLDEN_RAW_ENDPOINT.format(ip="172.17.0.3")]


def test_raw_table_scales_with_containers(lab1000):
    rules = [line for line in lab1000.host.iptables("raw").save_lines() if line.startswith("-A")]
    assert len(rules) == 1000
    assert rules[-1] == GOLDEN_RAW_ENDPOINT.format(ip="172.17.3.233")


def test_host_tables_and_conntrack(lab2):
    assert [t.name for t in lab2.host.firewall.used_tables()] == ["raw", "nat", "filter"]
    assert lab2.host.firewall.needs_conntrack
    for name in ("c1", "c2", "internet", "lan"):
        assert lab2.nodes[name].firewall.used_tables() == []


def test_host_has_docker0_gateway_and_forwarding(lab2):
    host = lab2.host
    assert host.interfaces["docker0"].kind == "bridge"
    assert [a.cidr for a in host.addresses_of("docker0")] == ["172.17.0.1/16"]
    assert host.sysctls == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.docker0.accept_ra": "0",
                            # a stock host: br_netfilter unloaded, bridged traffic skips iptables
                            "net.bridge.bridge-nf-call-iptables": "0", "net.bridge.bridge-nf-call-ip6tables": "0"}
    assert host.interfaces["docker0"].mac == "b2:7c:4e:1a:9d:30"


def test_containers_have_eth0_and_default_route_via_gateway(lab2):
    for name, ip in (("c1", "172.17.0.2"), ("c2", "172.17.0.3")):
        c = lab2.nodes[name]
        assert [a.cidr for a in c.addresses_of("eth0")] == [f"{ip}/16"]
        assert [(r.dst, r.via) for r in c.routes] == [("default", "172.17.0.1")]


def test_checks_prove_masquerade_and_stay_in_the_lab(lab2):
    checks = {c.name: c for c in lab2.checks}
    egress = checks["http c1->internet (NAT)"]
    assert egress.seen_from == "203.0.113.2"
    direct = checks["tcp/80 internet->c2 (direct routing)"]
    assert direct.allow is False and direct.dropped_by[:3] == ("host", "raw", "PREROUTING")
    router = checks["http internet->lan (host is no router)"]
    assert router.allow is False and router.dropped_by == ("host", "filter", "FORWARD", "policy")
    for c in lab2.checks:
        if hasattr(c, "dst"):
            lab2.resolve(c.dst)      # raises for an address outside the lab


@pytest.mark.parametrize("containers", ["1", "1001"])
def test_container_count_is_bounded(bridge_mode, containers):
    with pytest.raises(UsageError, match="between 2 and 1000"):
        bridge_mode.build({"containers": containers})
