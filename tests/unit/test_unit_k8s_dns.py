"""Cluster DNS on the k8s kit without the kernel (nsbox/kits/k8s/dns.py, nsbox/model/dnszone.py):
the zone CoreDNS would serve for the cluster's Services and pods (dns.md's record forms),
the answers the server gives for it (dnslib parses them back), kubelet's resolv.conf per
pod and its way through the recipe jail's JSON, and bad input refused in one line."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from nsbox.errors import ValidationError
from nsbox.kits import k8s
from nsbox.kits.k8s import services as svcs
from nsbox.kits.kubeproxy import iptables as kp_ipt
from nsbox.model import Lab
from nsbox.model.lab import Resolver, Server
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.validate import validate
from nsbox.model import dnszone
from nsbox.kinds.protocols.dns import answer as dns_answer

Z = "cluster.local"


def _cluster() -> tuple[Lab, k8s.Cluster, k8s.ClusterDNS]:
    lab = Lab("t")
    k = k8s.Cluster(lab)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    dns = k.cluster_dns(n1)
    for name, node in (("w1", n1), ("w2", n2)):
        k.pod(node, name, labels={"app": "web"})
    for i in range(3):
        k.pod(n2, f"db-{i}", labels={"app": "db"}, hostname=f"db-{i}", subdomain="db")
    k.pod(n1, "stray", labels={"app": "db"})  # no hostname: its dashed IP
    k.pod(n2, "c", namespace="other")
    k.service("web", [k8s.Port(80, 8080, name="http"), k8s.Port(53, proto="UDP", name="dns")],
              selector={"app": "web"})
    k.service("db", k8s.Port(5432, name="pg"), selector={"app": "db"}, cluster_ip="None")
    k.service("ext", [], type="ExternalName", external_name="www.example.com")
    return lab, k, dns


def ask(dns: k8s.ClusterDNS, name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(dns_answer(DNSRecord.question(name, qtype).pack(), dnszone.build(dns.records)))


def data(reply: DNSRecord, qtype: str) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype))


def test_kube_dns_is_the_tenth_address_and_a_clusterip_in_kube_proxys_rules() -> None:
    lab, k, dns = _cluster()
    validate(lab)
    assert dns.ip == "10.96.0.10" and dns.service.namespace == "kube-system"
    assert dns.service.endpoints == {"coredns"}
    web = next(s for s in k.services if s.name == "web")
    assert web.cluster_ip == "10.96.0.11"  # the allocator skips the DNS's address
    payload = kp_ipt.render(svcs.proxier_config(k, k.nodes["node2"]), [s.api for s in k.services],
                            [svcs.endpoint_slice(k, s) for s in k.services]).payload
    # KUBE-SVC-TCOU7JCQXEZGVUNU: the chain every real cluster's `iptables-save` shows for kube-dns:dns
    assert ('-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp -p udp '
            '-d 10.96.0.10 --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU') in payload.splitlines()
    assert "default/db" not in payload and "default/ext" not in payload  # kube-proxy skips both kinds
    assert any(s.kind == "dns" and s.port == 53 for s in lab.nodes["coredns"].servers)


def test_every_record_form_of_the_spec() -> None:
    lab, k, dns = _cluster()
    web = f"web.default.svc.{Z}"
    assert data(ask(dns, web), "A") == ["10.96.0.11"]
    assert data(ask(dns, f"_http._tcp.{web}", "SRV"), "SRV") == [f"0 100 80 {web}."]
    assert data(ask(dns, f"_dns._udp.{web}", "SRV"), "SRV") == [f"0 100 53 {web}."]
    assert data(ask(dns, "11.0.96.10.in-addr.arpa", "PTR"), "PTR") == [f"{web}."]
    db_ips = sorted(k.pod_ip(p) for p in ("db-0", "db-1", "db-2", "stray"))
    assert data(ask(dns, f"db.default.svc.{Z}"), "A") == db_ips
    assert data(ask(dns, f"db-1.db.default.svc.{Z}"), "A") == [k.pod_ip("db-1")]
    stray = k8s.dashed(k.pod_ip("stray"))
    assert data(ask(dns, f"{stray}.db.default.svc.{Z}"), "A") == [k.pod_ip("stray")]
    srv = data(ask(dns, f"_pg._tcp.db.default.svc.{Z}", "SRV"), "SRV")
    assert srv == sorted([f"0 25 5432 db-{i}.db.default.svc.{Z}." for i in range(3)]
                         + [f"0 25 5432 {stray}.db.default.svc.{Z}."])  # floor(100 / 4)
    assert data(ask(dns, k8s.reverse(k.pod_ip("db-2")), "PTR"), "PTR") == [f"db-2.db.default.svc.{Z}."]
    ext = ask(dns, f"ext.default.svc.{Z}")  # an A query: the CNAME answers it
    assert data(ext, "CNAME") == ["www.example.com."] and ext.header.rcode == RCODE.NOERROR
    assert data(ask(dns, f"{k8s.dashed(k.pod_ip('c'))}.other.pod.{Z}"), "A") == [k.pod_ip("c")]
    assert data(ask(dns, f"dns-version.{Z}", "TXT"), "TXT") == ['"1.1.0"']
    assert ask(dns, f"nothere.default.svc.{Z}").header.rcode == RCODE.NXDOMAIN
    assert ask(dns, f"web.other.svc.{Z}").header.rcode == RCODE.NXDOMAIN  # web is in default
    nodata = ask(dns, web, "AAAA")  # glibc asks A and AAAA: NOERROR, no answer
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    assert ask(dns, web.upper()).rr  # names compare case-insensitively


def test_a_headless_service_with_no_endpoints_is_nxdomain_and_the_zone_follows_the_pods() -> None:
    lab, k, dns = _cluster()
    k.service("idle", k8s.Port(80, name="http"), selector={"app": "none"}, cluster_ip="None")
    assert ask(dns, f"idle.default.svc.{Z}").header.rcode == RCODE.NXDOMAIN
    k.pod("node1", "late", labels={"app": "none"})  # a new pod: the next sync rebuilds the zone
    assert data(ask(dns, f"idle.default.svc.{Z}"), "A") == [k.pod_ip("late")]
    served = next(s for s in lab.nodes["coredns"].servers if s.kind == "dns")
    assert served.records == dns.records


def test_pods_get_kubelets_resolv_conf_for_their_namespace() -> None:
    lab, k, dns = _cluster()
    assert lab.nodes["w1"].resolver.text().splitlines()[1:] == [
        f"search default.svc.{Z} svc.{Z} {Z}", "nameserver 10.96.0.10", "options ndots:5"]
    assert lab.nodes["c"].resolver.searches[0] == f"other.svc.{Z}"
    assert lab.nodes["coredns"].resolver is None  # dnsPolicy Default: the node's resolver
    assert lab.nodes["node1"].resolver is None
    back = lab_from_dict(lab_to_dict(lab))  # through the recipe jail's JSON, validated again
    validate(back)
    assert back.nodes["w1"].resolver == lab.nodes["w1"].resolver
    assert back.nodes["coredns"].servers == lab.nodes["coredns"].servers


@pytest.mark.parametrize("resolver, message", [
    (Resolver(()), "1-3 nameservers"),
    (Resolver(("1.1.1.1",) * 4), "1-3 nameservers"),
    (Resolver(("x",)), "nameserver 'x' is not an IP address"),
    (Resolver(("10.0.0.1",), ("a b",)), "search domain 'a b'"),
    (Resolver(("10.0.0.1",), (), ("ndots:5\nnameserver 1.2.3.4",)), "option"),
])
def test_a_bad_resolver_is_refused(resolver, message) -> None:
    lab, k, dns = _cluster()
    lab.nodes["w1"].resolver = resolver
    with pytest.raises(ValidationError, match=message):
        validate(lab)


@pytest.mark.parametrize("record, message", [
    (("web", "SRV 1 2 x web."), "PRIORITY WEIGHT PORT TARGET"),
    (("web", "AAAA 10.0.0.1"), "not an IPv6 address"),
    (("web", "MX 10 mail."), "record type 'MX'"),
    (("we b", "A 10.0.0.1"), "not a DNS name"),
    (("web", "CNAME a..b"), "not a DNS name"),
])
def test_a_bad_zone_record_is_refused(record, message) -> None:
    lab, k, dns = _cluster()
    lab.nodes["w1"].servers.append(Server("dns", 5353, records=(record,)))
    with pytest.raises(ValidationError, match=message):
        validate(lab)


def test_bad_input_is_one_line() -> None:
    lab = Lab("t")
    k = k8s.Cluster(lab)
    n1 = k.node("node1", "10.244.1.0/24")
    k.service("a", k8s.Port(80), pods=[], cluster_ip="10.96.0.10")
    with pytest.raises(ValidationError, match="make the cluster DNS before the Services"):
        k.cluster_dns(n1)
    with pytest.raises(ValidationError, match="external_name"):
        k.service("e", [], type="ExternalName", external_name="nodot")
    with pytest.raises(ValidationError, match="namespace is a DNS label"):
        k.pod(n1, "p", namespace="Bad_NS")
    with pytest.raises(ValidationError, match="headless"):
        k.service("h", k8s.Port(80), selector={"a": "b"}, cluster_ip="None", type="NodePort")
    lab2 = Lab("t2")
    k2 = k8s.Cluster(lab2)
    dns = k2.cluster_dns(k2.node("node1", "10.244.1.0/24"))
    with pytest.raises(ValidationError, match="qtype"):
        dns.expect("coredns", "web", "x", qtype="MX")
    with pytest.raises(ValidationError, match="already"):
        k2.cluster_dns("node1")


def test_the_dns_check_carries_the_type_and_every_answer() -> None:
    lab, k, dns = _cluster()
    c = dns.expect("c", f"_pg._tcp.db.default.svc.{Z}", ["b", "a"], qtype="SRV")
    assert c.query == f"SRV _pg._tcp.db.default.svc.{Z}" and c.expected == "answer a, b"
    c = dns.expect("c", f"web.default.svc.{Z}", "10.96.0.11")
    assert c.query == f"web.default.svc.{Z}" and c.dst == "10.96.0.10"
    validate(lab)


def test_dual_stack_model_both_families_for_pods_services_and_kube_proxy() -> None:
    from nsbox.kits.k8s import dualstack

    lab = Lab("t")
    k = k8s.Cluster(lab, dual_stack=True)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    k.pod(n1, "w1", labels={"app": "web"})
    k.pod(n2, "w2", labels={"app": "web"})
    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"})
    validate(lab)
    assert n1.pod_cidr6 == "fd00:10:244:1::/64" and n2.pod_cidr6 == "fd00:10:244:2::/64"
    assert k.pod_ip6["w2"] == "fd00:10:244:2::2" and k.pod_ip("w2") == "10.244.2.2"
    assert web.cluster_ip6 == "fd00:10:96::a" and web.cluster_ip == "10.96.0.10"
    nat6 = n2.node.ip6tables("nat")
    rules6 = [r.render() for c in nat6.chains.values() for r in c.rules]
    assert any("-d fd00:10:96::a/128" in r and "default/web:http cluster IP" in r for r in rules6), rules6
    assert any("--to-destination [fd00:10:244:1::2]:8080" in r for r in rules6), rules6
    assert not any("fd00:" in r.render() for c in n2.node.iptables("nat").chains.values() for r in c.rules)
    assert dualstack.api6(web).cluster_ip == web.cluster_ip6
    with pytest.raises(ValidationError, match="dual_stack is built for cni=bridge"):
        k8s.Cluster(Lab("u"), cni="ptp", dual_stack=True)


def test_a_spread_check_with_at_most_one_is_session_affinity() -> None:
    from nsbox.model.spread import SpreadCheck
    from nsbox.verify.results import CheckResult
    from nsbox.verify.spread import run_spread

    c = SpreadCheck("s", ("p1", "p2", "p3"), 1, 1.0, at_most=1)
    assert c.expected == "one endpoint answered all 3"

    def results(*who):
        return {f"p{i}": CheckResult(f"p{i}", "reach", "allow", "allow", True, "", answered_by=w)
                for i, w in enumerate(who, 1)}
    assert run_spread(c, results("a", "a", "a")).passed
    assert not run_spread(c, results("a", "b", "a")).passed
    lab, k, dns = _cluster()
    web = next(s for s in k.services if s.name == "web")
    with pytest.raises(ValidationError, match="at_most"):
        lab.expect_spread("c", web, 80, probes=3, at_least=2, at_most=1)
    lab.expect_spread("c", web, 80, probes=3, at_least=1, at_most=1, name="sticky")
    back = lab_from_dict(lab_to_dict(lab))  # through the recipe jail's JSON: at_most kept
    assert next(x for x in back.checks if x.name == "sticky").at_most == 1
