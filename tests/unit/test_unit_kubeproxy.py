"""nsbox.kits.kubeproxy against kube-proxy's own expected dumps.

tests/data/kube-proxy/ (vendored from kubernetes/kubernetes, SOURCE.md) holds the expected
output of kube-proxy's unit tests: for the iptables proxier the `iptables-restore` payload
(TestOverallIPTablesRules, TestBadIPs, the nine steps of TestSyncProxyRulesRepeated, five
legacy dumps), for the nftables proxier the whole `ip kube-proxy` table
(TestOverallNFTablesRules, TestBadIPs, the ten steps of TestSyncProxyRulesRepeated). Each
scenario is rebuilt from its JSON sidecar (or, for the repeated syncs, from the sidecar's
steps, as upstream's test drives them), rendered by the port, and compared with upstream's
file after upstream's own normalisation (sortIPTablesRules / sortNFTablesTransaction, ported
in the package; kube-proxy walks its service map in random order, so its tests sort) - byte
for byte, nothing else ignored.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from nsbox.kits.kubeproxy import iptables as ipt
from nsbox.kits.kubeproxy import names
from nsbox.kits.kubeproxy import nftables as nft
from nsbox.kits.kubeproxy.model import (Endpoint, EndpointSlice, EndpointSlicePort, ProxierConfig, Service,
                                        ServicePort, load_scenario, service_from_dict, service_ports,
                                        slice_from_dict)
from tests.support.paths import REPO
from tests.support import paths

DATA = paths.DATA / "kube-proxy"
IPT, NFT = DATA / "iptables", DATA / "nftables"
IPT_CFG = ProxierConfig()  # NewFakeProxier (iptables): _environment.json
NFT_CFG = ProxierConfig(node_port_addresses="primary")  # nftables: NodePorts on the node IP only


def assert_same(expected: str, got: str) -> None:
    """Line-level diff in the failure message, then the exact comparison."""
    if expected != got:
        import difflib
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "upstream", "port"))
        pytest.fail("differs from kube-proxy's dump:\n" + diff)


# --- names --------------------------------------------------------------------------------

def _port(ns: str, svc: str, port_name: str, proto: str = "TCP"):
    s = Service(ns, svc, "172.30.0.1", (ServicePort(port_name, 80, proto),))
    return service_ports(s, IPT_CFG)[0]


def test_iptables_chain_hashes_match_every_name_in_the_sidecars():
    checked = 0
    for sidecar in ("TestOverallIPTablesRules.json", "TestSyncProxyRulesRepeated.json"):
        for label, want in json.loads((IPT / sidecar).read_text())["chainNames"].items():
            parts = label.split()
            if parts[0] == "SEP":
                ns_svc, port_name = parts[1].rsplit(":", 1)
                ip, port = parts[2].rsplit(":", 1)
                p = _port(*ns_svc.split("/"), port_name)
                from nsbox.kits.kubeproxy.model import EndpointInfo
                import ipaddress
                ep = EndpointInfo(ipaddress.ip_address(ip), int(port), False, True, True, False)
                assert names.sep_chain(p, ep) == "KUBE-SEP-" + want
            else:
                ns_svc, port_name = parts[0].rsplit(":", 1)
                assert names.svc_chain(_port(*ns_svc.split("/"), port_name)) == "KUBE-SVC-" + want
            checked += 1
    assert checked == 21


def test_nftables_chain_hashes_match_the_sidecar():
    import ipaddress
    from nsbox.kits.kubeproxy.model import EndpointInfo
    hashes = json.loads((NFT / "TestSyncProxyRulesRepeated.json").read_text())["chainHashes"]
    for label, want in hashes.items():
        svc_part, _, ep_part = label.partition("__")
        ns, svc, proto, port_name = svc_part.split("/")
        p = _port(ns, svc, port_name, proto.upper())
        if ep_part:
            ip, port = ep_part.split("/")
            got = names.nft_endpoint_base(p, EndpointInfo(ipaddress.ip_address(ip), int(port), False, True, True, False))
        else:
            got = names.nft_port_base(p)
        assert got == f"{want}-{label}"


def test_probability_strings_are_go_formatted():
    # TestComputeProbability's table (_jump-rules.md)
    assert [ipt.probability(n) for n in (1, 2, 10, 100, 1000, 10000, 100000, 100001)] == [
        "1.0000000000", "0.5000000000", "0.1000000000", "0.0100000000", "0.0010000000",
        "0.0001000000", "0.0000100000", "0.0000099999"]


# --- iptables: full dumps -----------------------------------------------------------------

@pytest.mark.parametrize("test", ["TestOverallIPTablesRules", "TestBadIPs"])
def test_iptables_full_dump_is_reproduced(test):
    services, slices = load_scenario(str(IPT / f"{test}.json"))
    result = ipt.render(IPT_CFG, services, slices)
    expected = (IPT / f"{test}.rules").read_text()
    assert_same(ipt.sort_restore(expected), ipt.sort_restore(result.payload))
    # sidecar note: sync_proxy_rules_iptables_total{table=nat} = the number of nat -A lines
    assert result.nat_rules_total == expected.split("*nat", 1)[1].count("\n-A ")


LEGACY = {  # test -> (config, sidecar holding the inputs)
    "TestExternalTrafficPolicyLocal": (dict(), None),
    "TestNonLocalExternalIPs": (dict(), None),
    "TestOnlyLocalNodePorts": (dict(node_port_addresses=("192.168.0.0/24",)), None),
    "TestOnlyLocalNodePortsNoClusterCIDR": (dict(node_port_addresses=("192.168.0.0/24",), cluster_cidr=None),
                                            "TestOnlyLocalNodePorts"),
    "TestDisableLocalhostNodePortsIPv6": (dict(family=6, node_ip="2001:db8::1", cluster_cidr=None,
                                               localhost_node_ports=False), None),
}


@pytest.mark.parametrize("test", sorted(LEGACY))
def test_iptables_legacy_dump_is_reproduced(test):
    """Older revisions (no nfacct, node test-hostname): eTP=Local with a local endpoint
    (KUBE-SVL), nodePortAddresses, no local detector, IPv6."""
    overrides, inputs = LEGACY[test]
    data = json.loads((IPT / "legacy" / f"{inputs or test}.json").read_text())
    services = [service_from_dict(s) for s in data["services"]]
    slices = [slice_from_dict(s) for s in data["endpointSlices"]]
    cfg = replace(IPT_CFG, node_name="test-hostname", nfacct=False, **overrides)
    got = ipt.render(cfg, services, slices).payload
    assert_same(ipt.sort_restore((IPT / "legacy" / f"{test}.rules").read_text()), ipt.sort_restore(got))


# --- the repeated syncs -------------------------------------------------------------------

def _svc(ns: str, name: str, ip: str, port_name: str, port: int) -> Service:
    return Service(ns, name, ip, (ServicePort(port_name, port),))


def _slice(ns: str, name: str, ips: list[str], port_name: str, port: int) -> EndpointSlice:
    return EndpointSlice(ns, name, tuple(Endpoint((ip,)) for ip in ips), (EndpointSlicePort(port_name, port),),
                         name=f"{name}-1")


class Objects:
    """The API objects upstream's TestSyncProxyRulesRepeated creates and changes."""

    def __init__(self) -> None:
        self.services = {"svc1": _svc("ns1", "svc1", "172.30.0.41", "p80", 80),
                         "svc2": _svc("ns2", "svc2", "172.30.0.42", "p8080", 8080)}
        self.slices = {"svc1": _slice("ns1", "svc1", ["10.0.1.1"], "p80", 80),
                       "svc2": _slice("ns2", "svc2", ["10.0.2.1"], "p8080", 8080)}

    def add_svc3(self) -> None:
        self.services["svc3"] = _svc("ns3", "svc3", "172.30.0.43", "p80", 80)
        self.slices["svc3"] = _slice("ns3", "svc3", ["10.0.3.1"], "p80", 80)

    def svc3_endpoints(self, *ips: str) -> None:
        self.slices["svc3"] = _slice("ns3", "svc3", list(ips), "p80", 80)

    def add_svc4(self) -> None:
        self.services["svc4"] = _svc("ns4", "svc4", "172.30.0.44", "p80", 80)

    def svc4_endpoints(self) -> None:
        self.slices["svc4"] = _slice("ns4", "svc4", ["10.0.4.1"], "p80", 80)


def iptables_repeated() -> list[ipt.SyncResult]:
    """The sidecar's steps; the failed partial restore between 8 and 9 is a sync whose
    restore fails (upstream injects a dangling jump into its fake iptables)."""
    o, proxier, out = Objects(), ipt.Proxier(IPT_CFG), []

    def sync(ok: bool = True) -> ipt.SyncResult:
        return proxier.sync(o.services.values(), o.slices.values(), restore_ok=ok)

    out.append(sync())
    o.add_svc3(); out.append(sync())
    del o.services["svc2"]; out.append(sync())  # its EndpointSlice stays
    o.add_svc4(); out.append(sync())
    o.svc4_endpoints(); out.append(sync())
    o.svc3_endpoints("10.0.3.2"); out.append(sync())
    o.svc3_endpoints("10.0.3.2", "10.0.3.3"); out.append(sync())
    out.append(sync())
    del o.services["svc4"]
    failed = sync(ok=False)
    assert not failed.full and proxier.need_full_sync
    out.append(sync())
    return out


IPT_STEPS = sorted(IPT.glob("TestSyncProxyRulesRepeated-*.rules"), key=lambda p: int(p.name.split("-")[1]))
NFT_STEPS = sorted(NFT.glob("TestSyncProxyRulesRepeated-*.nft"), key=lambda p: int(p.name.split("-")[1]))


@pytest.fixture(scope="module")
def ipt_repeated() -> list[ipt.SyncResult]:
    return iptables_repeated()


@pytest.mark.parametrize("step", IPT_STEPS, ids=lambda p: p.stem.split("-", 1)[1])
def test_iptables_repeated_sync_step_is_reproduced(step, ipt_repeated):
    assert len(IPT_STEPS) == 9
    i = int(step.name.split("-")[1])
    result = ipt_repeated[i - 1]
    assert result.full == (i in (1, 9))  # steps 2-8 are partial; 9 the forced full resync
    assert_same(ipt.sort_restore(step.read_text()), ipt.sort_restore(result.payload))


def test_iptables_repeated_nat_rule_metric_follows_the_sidecar(ipt_repeated):
    # "nat_rules_total_metric" 15, then the deltas +5 -5 0 +5 0 +3 0 -5
    totals = [r.nat_rules_total for r in ipt_repeated]
    assert totals == [15, 20, 15, 15, 20, 20, 23, 23, 18]


def test_iptables_partial_sync_omits_unchanged_services_but_full_sync_has_them():
    """Mutation check of the partial-sync model: without the change tracking (every
    sync full) step 2 would rewrite svc1 and svc2 too - the golden would then differ."""
    o = Objects()
    full = ipt.Proxier(IPT_CFG)
    full.sync(o.services.values(), o.slices.values())
    o.add_svc3()
    full.need_full_sync = True
    payload = full.sync(o.services.values(), o.slices.values()).payload
    step2 = ipt.sort_restore((IPT / "TestSyncProxyRulesRepeated-2-add-svc3.rules").read_text())
    assert ipt.sort_restore(payload) != step2
    assert ":KUBE-SVC-XPGD46QRK7WJZT7O" in payload and ":KUBE-SVC-XPGD46QRK7WJZT7O" not in step2


# --- nftables -----------------------------------------------------------------------------

@pytest.mark.parametrize("test", ["TestOverallNFTablesRules", "TestBadIPs"])
def test_nftables_full_dump_is_reproduced(test):
    # both sidecars say: the same Services/EndpointSlices as the iptables test of that name
    src = {"TestOverallNFTablesRules": "TestOverallIPTablesRules", "TestBadIPs": "TestBadIPs"}[test]
    services, slices = load_scenario(str(IPT / f"{src}.json"))
    got = nft.render(NFT_CFG, services, slices).text()
    assert_same(nft.sort_transaction((NFT / f"{test}.nft").read_text()), nft.sort_transaction(got))


def test_nftables_base_rules_are_every_dumps_fixed_part():
    got = nft.render(NFT_CFG, [], []).text()
    assert_same(nft.sort_transaction((NFT / "_baseRules.nft").read_text()), nft.sort_transaction(got))


def nftables_repeated() -> tuple[list[str], nft.Proxier]:
    o, proxier, out = Objects(), nft.Proxier(NFT_CFG), []

    def sync() -> str:
        return proxier.sync(o.services.values(), o.slices.values())

    out.append(sync())
    o.add_svc3(); out.append(sync())
    del o.services["svc2"]; out.append(sync())
    proxier.age_stale_chains(2); out.append(sync())
    o.add_svc4(); out.append(sync())
    o.svc4_endpoints(); out.append(sync())
    o.svc3_endpoints("10.0.3.2"); out.append(sync())
    proxier.age_stale_chains(2); o.svc3_endpoints("10.0.3.2", "10.0.3.3"); out.append(sync())
    o.svc3_endpoints(); out.append(sync())
    stale_after_9 = sorted(proxier.stale_chains)
    o.svc3_endpoints("10.0.3.2", "10.0.3.3"); out.append(sync())
    assert proxier.stale_chains == {}
    # the sidecar's last step: empty again, sync, age, restore, sync; then a no-op sync
    o.svc3_endpoints(); sync(); proxier.age_stale_chains(2)
    o.svc3_endpoints("10.0.3.2", "10.0.3.3"); out.append(sync())
    out.append(sync())
    assert stale_after_9 == ["endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80",
                             "endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80",
                             "service-4AT6LBPK-ns3/svc3/tcp/p80"]
    return out, proxier


@pytest.fixture(scope="module")
def nft_repeated() -> list[str]:
    return nftables_repeated()[0]


@pytest.mark.parametrize("step", NFT_STEPS, ids=lambda p: p.stem.split("-", 1)[1])
def test_nftables_repeated_sync_step_is_reproduced(step, nft_repeated):
    assert len(NFT_STEPS) == 10
    i = int(step.name.split("-")[1])
    expected = nft.sort_transaction(step.read_text())
    assert_same(expected, nft.sort_transaction(nft_repeated[i - 1]))
    if i == 10:  # the sidecar's 11th action ends in the same state, twice
        assert_same(expected, nft.sort_transaction(nft_repeated[10]))
        assert_same(expected, nft.sort_transaction(nft_repeated[11]))


def test_nftables_stale_chains_are_kept_until_aged():
    """Mutation check: deleting stale chains at once (no aging) loses step 3's flushed chains."""
    o, proxier = Objects(), nft.Proxier(NFT_CFG)
    proxier.sync(o.services.values(), o.slices.values())
    o.add_svc3(); proxier.sync(o.services.values(), o.slices.values())
    del o.services["svc2"]
    proxier.age_stale_chains(0)
    got = proxier.sync(o.services.values(), o.slices.values())
    assert "add chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080\n" in got
    no_stale = nft.render(NFT_CFG, o.services.values(), o.slices.values()).text()
    step3 = nft.sort_transaction((NFT / "TestSyncProxyRulesRepeated-3-delete-svc2.nft").read_text())
    assert nft.sort_transaction(no_stale) != step3


# --- the comparison itself must not hide differences ----------------------------------------

def test_sort_restore_keeps_rule_order_inside_service_chains():
    services, slices = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    payload = ipt.render(IPT_CFG, services, slices).payload
    lines = payload.splitlines()
    i = lines.index(next(ln for ln in lines if ln.startswith("-A KUBE-SVC-4SW47YFZTEDKD3PK") and "statistic" in ln))
    lines[i], lines[i + 1] = lines[i + 1], lines[i]  # swap the two endpoint rules
    expected = ipt.sort_restore((IPT / "TestOverallIPTablesRules.rules").read_text())
    assert ipt.sort_restore("\n".join(lines) + "\n") != expected


def test_sort_transaction_keeps_rule_order_inside_a_chain():
    text = (NFT / "TestOverallNFTablesRules.nft").read_text()
    a = "add rule ip kube-proxy masquerading mark and 0x4000 == 0 return\n"
    b = "add rule ip kube-proxy masquerading mark set mark xor 0x4000\n"
    assert nft.sort_transaction(text.replace(a + b, b + a)) != nft.sort_transaction(text)


# --- behaviour the dumps do not cover -----------------------------------------------------

def test_kube_proxy_write_order_is_kept_in_the_payload():
    """The raw payload is kube-proxy's order (top-level chains first, then per-service),
    not the sorted one: a restore of it works on its own."""
    services, slices = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    lines = ipt.render(IPT_CFG, services, slices).payload.splitlines()
    assert lines[:6] == ["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                         ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]"]
    nat = lines[lines.index("*nat") + 1:]
    assert nat[-2].startswith("-A KUBE-SERVICES") and "must be the last rule" in nat[-2]


def test_udp_sctp_several_ports_and_target_port():
    svc = Service("ns", "dns", "172.30.0.10", (ServicePort("dns", 53, "UDP", target_port=5353),
                                               ServicePort("dns-tcp", 53, "TCP", target_port=5353),
                                               ServicePort("sig", 3868, "SCTP")))
    sl = EndpointSlice("ns", "dns", (Endpoint(("10.1.0.5",)),),
                       (EndpointSlicePort("dns", 5353, "UDP"), EndpointSlicePort("dns-tcp", 5353, "TCP"),
                        EndpointSlicePort("sig", 3868, "SCTP")))
    payload = ipt.render(IPT_CFG, [svc], [sl]).payload
    assert '-m udp -p udp -d 172.30.0.10 --dport 53 -j KUBE-SVC-' in payload
    assert "-m udp -p udp -j DNAT --to-destination 10.1.0.5:5353" in payload
    assert "-m sctp -p sctp -j DNAT --to-destination 10.1.0.5:3868" in payload
    table = nft.render(NFT_CFG, [svc], [sl]).text()
    assert "add element ip kube-proxy service-ips { 172.30.0.10 . udp . 53 : goto service-" in table
    assert "meta l4proto sctp dnat to 10.1.0.5:3868" in table


def test_internal_traffic_policy_local_without_local_endpoint_drops_cluster_ip():
    svc = Service("ns", "web", "172.30.0.50", (ServicePort("http", 80),), internal_traffic_policy="Local")
    sl = EndpointSlice("ns", "web", (Endpoint(("10.1.0.7",), node_name="other-node"),), (EndpointSlicePort("http", 80),))
    payload = ipt.render(IPT_CFG, [svc], [sl]).payload
    assert ('-A KUBE-SERVICES -m comment --comment "ns/web:http has no local endpoints" -m tcp -p tcp '
            '-d 172.30.0.50 --dport 80 -j DROP') in payload
    assert "KUBE-SEP-" not in payload
    local = replace(sl, endpoints=(Endpoint(("10.1.0.7",), node_name="test-node"),))
    payload = ipt.render(IPT_CFG, [svc], [local]).payload
    assert "-j KUBE-SVL-" in payload and ":KUBE-SVC-" not in payload


def test_terminating_endpoints_are_a_fallback_only():
    svc = Service("ns", "web", "172.30.0.51", (ServicePort("http", 80),))
    term = Endpoint(("10.1.0.8",), ready=False, serving=True, terminating=True)
    sl = EndpointSlice("ns", "web", (term, Endpoint(("10.1.0.9",))), (EndpointSlicePort("http", 80),))
    payload = ipt.render(IPT_CFG, [svc], [sl]).payload
    assert "10.1.0.9:80" in payload and "10.1.0.8:80" not in payload
    only_term = replace(sl, endpoints=(term, Endpoint(("10.1.0.10",), ready=False, serving=False, terminating=True)))
    payload = ipt.render(IPT_CFG, [svc], [only_term]).payload
    assert "--to-destination 10.1.0.8:80" in payload and "10.1.0.10" not in payload


def test_large_cluster_mode_drops_endpoint_comments():
    svc = Service("ns", "big", "172.30.1.1", (ServicePort("p", 80),))
    sl = EndpointSlice("ns", "big", tuple(Endpoint((f"10.2.{i // 250}.{i % 250 + 1}",)) for i in range(1001)),
                       (EndpointSlicePort("p", 80),))
    payload = ipt.render(IPT_CFG, [svc], [sl]).payload
    sep_rules = [ln for ln in payload.splitlines() if ln.startswith("-A KUBE-SEP-")]
    assert len(sep_rules) == 2002 and not any("--comment" in ln for ln in sep_rules)


def test_health_check_port_only_for_local_load_balancers():
    services, _ = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    by_name = {s.name: s for s in services}
    assert by_name["svc5"].health_check_node_port == 30000
    assert service_ports(by_name["svc5"], IPT_CFG)[0].health_check_node_port == 0  # eTP Cluster
    assert service_ports(by_name["svc2"], IPT_CFG)[0].health_check_node_port == 30000


def test_jump_rules_are_the_fourteen_of_iptablesJumpChains():
    rules = ipt.jump_rules()
    assert len(rules) == 14
    assert rules[0] == ("filter", ["INPUT", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                                   "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES"])
    assert rules[-1] == ("filter", ["OUTPUT", "-j", "KUBE-FIREWALL"])


def test_bad_protocol_is_refused():
    svc = Service("ns", "x", "172.30.0.1", (ServicePort("p", 80, "ICMP"),))
    with pytest.raises(ValueError, match="unknown protocol"):
        ipt.render(IPT_CFG, [svc], [])


def every_feature(family: int) -> tuple[ProxierConfig, ProxierConfig, list[Service], list[EndpointSlice]]:
    """One Service per feature the dumps above leave out or touch once, in FAMILY; with
    the iptables and nftables configs of a node whose IP is in a LoadBalancer source range
    (the allow-from-node rule). For the kernel tests (do the rules load?) and the shape
    checks below."""
    if family == 4:
        node, cidr, pod, vip, ext = "192.168.0.2", "10.0.0.0/8", "10.1.{}.{}", "5.6.7.{}", "192.168.99.{}"
        cip, rng, svc_cidr = "172.30.0.{}", ("192.168.0.0/24", "203.0.113.0/25"), "172.30.0.0/16"
        local_ips = ("127.0.0.1", node)
    else:
        node, cidr, pod, vip, ext = "2001:db8::1", "fd00:10::/64", "fd00:10::{}:{}", "2001:db8:5::{}", "2001:db8:99::{}"
        cip, rng, svc_cidr = "fd00:30::{}", ("2001:db8::/64", "2001:db8:ff::/48"), "fd00:30::/112"
        local_ips = ("::1", node)
    ipt_cfg = ProxierConfig(family=family, node_ip=node, cluster_cidr=cidr, local_ips=local_ips,
                            localhost_node_ports=family == 4, random_fully=True)
    nft_cfg = replace(ipt_cfg, node_port_addresses="primary", service_cidrs=(svc_cidr,))
    at = "IPv4" if family == 4 else "IPv6"
    me, other = "test-node", "node-2"

    def eps(*items: tuple[int, str | None, dict]) -> tuple[Endpoint, ...]:
        return tuple(Endpoint((pod.format(i, i),), node_name=n, **kw) for i, n, kw in items)

    services = [
        Service("ns", "multi", cip.format(10), (ServicePort("dns", 53, "UDP", target_port=5353),
                                               ServicePort("dns-tcp", 53, "TCP", target_port=5353),
                                               ServicePort("sig", 3868, "SCTP", node_port=30868)), type="NodePort"),
        Service("ns", "lb-local", cip.format(11), (ServicePort("http", 80, node_port=30080),), type="LoadBalancer",
                external_traffic_policy="Local", health_check_node_port=32000, load_balancer_ingress=(vip.format(1),),
                load_balancer_source_ranges=rng, external_ips=(ext.format(22),)),
        Service("ns", "itp-local", cip.format(12), (ServicePort("http", 80),), internal_traffic_policy="Local"),
        Service("ns", "sticky", cip.format(13), (ServicePort("http", 80),), session_affinity="ClientIP",
                session_affinity_timeout=600),
        Service("ns", "ending", cip.format(14), (ServicePort("http", 80, node_port=30014),), type="NodePort",
                external_traffic_policy="Local"),
        Service("ns", "empty", cip.format(15), (ServicePort("http", 80, node_port=30015),), type="NodePort"),
        Service("ns", "itp-none", cip.format(16), (ServicePort("http", 80),), internal_traffic_policy="Local"),
    ]
    slices = [
        EndpointSlice("ns", "multi", eps((1, me, {}), (2, other, {})),
                      (EndpointSlicePort("dns", 5353, "UDP"), EndpointSlicePort("dns-tcp", 5353, "TCP"),
                       EndpointSlicePort("sig", 3868, "SCTP")), address_type=at),
        EndpointSlice("ns", "lb-local", eps((3, me, {}), (4, other, {})), (EndpointSlicePort("http", 8080),),
                      address_type=at),
        EndpointSlice("ns", "itp-local", eps((5, me, {}), (6, other, {})), (EndpointSlicePort("http", 80),),
                      address_type=at),
        EndpointSlice("ns", "sticky", eps((7, other, {}), (8, other, {}), (9, other, {})),
                      (EndpointSlicePort("http", 80),), address_type=at),
        EndpointSlice("ns", "ending", eps((10, me, dict(ready=False, serving=True, terminating=True)),
                                          (11, other, {})), (EndpointSlicePort("http", 80),), address_type=at),
        EndpointSlice("ns", "itp-none", eps((12, other, {})), (EndpointSlicePort("http", 80),), address_type=at),
    ]
    return ipt_cfg, nft_cfg, services, slices


@pytest.mark.parametrize("family", [4, 6])
def test_every_feature_has_kube_proxys_shape(family):
    ipt_cfg, nft_cfg, services, slices = every_feature(family)
    payload = ipt.render(ipt_cfg, services, slices).payload
    lines = payload.splitlines()
    # eTP=Local with a local endpoint: EXT -> SVL holding only the local endpoint
    svl = [ln for ln in lines if ln.startswith("-A KUBE-SVL-") and "ns/lb-local:http ->" in ln]
    assert len(svl) == 1 and f"{'10.1.3.3' if family == 4 else '[fd00:10::3:3]'}:8080" in svl[0]
    # the node is inside a source range: the LB IP itself is allowed as a source
    fw = [ln for ln in lines if ln.startswith("-A KUBE-FW-")]
    assert len(fw) == 4 and any(f"-s {'5.6.7.1' if family == 4 else '2001:db8:5::1'} " in ln for ln in fw)
    # iTP=Local without a local endpoint: the ClusterIP is dropped
    assert '"ns/itp-none:http has no local endpoints"' in payload and "-j DROP" in payload
    # terminating local endpoint used for external traffic, the ready remote one for internal
    assert "ns/ending:http" in payload
    # no endpoints: REJECT for the ClusterIP and the NodePort
    assert payload.count('"ns/empty:http has no endpoints"') == 2
    assert "MASQUERADE --random-fully" in payload
    assert "-m sctp -p sctp --dport 30868" in payload
    table = nft.render(nft_cfg, services, slices).text()
    assert "local-" in table and "timeout 600s" in table and "goto reject-chain" in table
    assert ("ip6 saddr" in table) == (family == 6)


def test_nftables_startup_over_a_preloaded_table():
    """TestSyncProxyRulesStartup: kube-proxy restarts over the table a previous run left;
    the preloaded service/endpoint chains are in the kernel, the first sync leaves the
    expected table (svc1 gains an endpoint, svc3 is new without endpoints)."""
    preloaded = (NFT / "TestSyncProxyRulesStartup-preloaded.nft").read_text()
    proxier = nft.Proxier(NFT_CFG)
    proxier.kernel_chains = {ln.split()[4] for ln in preloaded.splitlines()
                             if ln.startswith("add chain ") and nft.is_service_chain(ln.split()[4])}
    assert len(proxier.kernel_chains) == 4
    services = [_svc("ns1", "svc1", "172.30.0.41", "p80", 80), _svc("ns2", "svc2", "172.30.0.42", "p8080", 8080),
                _svc("ns3", "svc3", "172.30.0.43", "p80", 80)]
    slices = [_slice("ns1", "svc1", ["10.0.1.1", "10.0.1.2"], "p80", 80),
              _slice("ns2", "svc2", ["10.0.2.1"], "p8080", 8080)]
    got = proxier.sync(services, slices)
    assert proxier.stale_chains == {}
    expected = (NFT / "TestSyncProxyRulesStartup-expected.nft").read_text()
    assert_same(nft.sort_transaction(expected), nft.sort_transaction(got))


def test_the_package_is_pure():
    """No module of the port imports anything that runs programs or talks to the kernel."""
    import ast
    pkg = REPO / "nsbox" / "kits" / "kubeproxy"
    allowed = {"__future__", "base64", "dataclasses", "hashlib", "ipaddress", "json", "time", "typing", "nsbox"}
    for path in sorted(pkg.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] in allowed, f"{path.name} imports {mod}"
                if mod.startswith("nsbox"):
                    assert mod.startswith("nsbox.kits.kubeproxy"), f"{path.name} imports {mod}"


def test_endpoint_slice_cache_semantics():
    """pkg/proxy/endpointslicecache.go: conditions unset are ready and serving; the same
    ip:port in two slices is one endpoint, a later copy winning unless it is terminating;
    endpoints sorted by their "ip:port" string (10.0.0.10 before 10.0.0.9)."""
    from nsbox.kits.kubeproxy.model import endpoints_for
    svc = Service("ns", "web", "172.30.0.60", (ServicePort("http", 80),))
    [port] = service_ports(svc, IPT_CFG)
    p = (EndpointSlicePort("http", 80),)
    a = EndpointSlice("ns", "web", (Endpoint(("10.0.0.9",)), Endpoint(("10.0.0.10",), ready=False)), p, name="a")
    b = EndpointSlice("ns", "web", (Endpoint(("10.0.0.10",), ready=True),), p, name="b")
    c = EndpointSlice("ns", "web", (Endpoint(("10.0.0.9",), ready=False, terminating=True),), p, name="c")
    eps = endpoints_for(port, [a, b, c], IPT_CFG)
    assert [e.text for e in eps] == ["10.0.0.10:80", "10.0.0.9:80"]
    assert all(e.ready and e.serving for e in eps)  # b replaced a's copy; c (terminating) did not


def test_a_zero_cidr_in_node_port_addresses_matches_all():
    """NodePortAddresses.MatchAll: 0.0.0.0/0 in the list is the same as no list."""
    services, slices = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    listed = ipt.render(replace(IPT_CFG, node_port_addresses=("0.0.0.0/0", "::/0")), services, slices).payload
    assert listed == ipt.render(IPT_CFG, services, slices).payload
