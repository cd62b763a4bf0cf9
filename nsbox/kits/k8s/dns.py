"""Cluster DNS on the k8s kit, as kubeadm deploys CoreDNS and kubelet points pods at it.

    k = k8s.Cluster(lab, mode="iptables")
    n1 = k.node("node1", "10.244.1.0/24")
    dns = k.cluster_dns(n1)                     # before the Services: it takes 10.96.0.10
    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"})
    dns.expect("client", "web.default.svc.cluster.local", web.cluster_ip)
    dns.expect("client", "_http._tcp.web.default.svc.cluster.local", "0 100 80 web.default.svc.cluster.local.",
               qtype="SRV")

What is built (the record forms of Kubernetes DNS-Based Service Discovery 1.1.0 with
CoreDNS's kubernetes plugin's choices, kubeadm's Corefile: `pods insecure`, `ttl 30`):
- a pod `coredns` in namespace kube-system (label k8s-app=kube-dns) on the node given,
  serving DNS on UDP 53 (nsbox's dns server: nsbox/model/dnszone.py), and the Service
  kube-system/kube-dns (port `dns` 53/UDP) on the 10th address of the service CIDR
  (kubeadm's GetDNSIP: 10.96.0.10), a ClusterIP in kube-proxy's rules like any other, so a
  pod's query goes through kube-proxy's DNAT to the coredns pod. kubeadm's Service also
  has `dns-tcp` 53/TCP and `metrics` 9153/TCP; nsbox's server answers UDP only, so the
  Service has only the UDP port (a TCP query would be refused by kube-proxy's REJECT,
  not answered).
- its zone, rebuilt at every kube-proxy sync (a Service or pod added) from the cluster:
  `<svc>.<ns>.svc.<zone>` A (AAAA for an IPv6 ClusterIP); SRV `_<port>._<proto>.<svc>...`
  per named port (0 100 PORT svc.); PTR of the ClusterIP; a headless Service
  (clusterIP None): one A per endpoint, `<hostname>.<svc>...` per endpoint (hostname =
  the pod's spec.hostname when its spec.subdomain is the Service, as the endpoints
  controller's ShouldSetHostname; else CoreDNS's dashed IP), SRV per endpoint × named
  port with weight floor(100/N), PTR per endpoint, no endpoints = NXDOMAIN; ExternalName
  = CNAME; `<a-b-c-d>.<ns>.pod.<zone>` A for every pod of the cluster (CoreDNS's
  `pods insecure` answers any such name, from the name alone: a flat zone answers the
  cluster's own pods only, as `pods verified` would); `dns-version.<zone>` TXT "1.1.0".
- every other pod's /etc/resolv.conf as kubelet writes it for dnsPolicy ClusterFirst
  (`nameserver 10.96.0.10`, `search <ns>.svc.<zone> svc.<zone> <zone>`, `options
  ndots:5`), in the pod's own mount namespace in live labs (nsbox up / exec / shell).
  The coredns pod itself has dnsPolicy Default (the node's resolver).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from nsbox.errors import ValidationError
from nsbox.model.lab import Resolver, Server
from nsbox.model.dnszone import is_name

if TYPE_CHECKING:
    from nsbox.kits.k8s.cluster import Cluster, K8sNode
    from nsbox.kits.k8s.services import ServiceHandle

ZONE = "cluster.local"
SPEC_VERSION = "1.1.0"
DNS_POD = "coredns"
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_LABELS = {"k8s-app": "kube-dns"}
NDOTS = "ndots:5"  # kubelet's defaultDNSOptions
QTYPES = ("A", "AAAA", "CNAME", "SRV", "PTR", "TXT")


def dashed(ip: str) -> str:
    """CoreDNS's endpoint name for an address without a hostname: 10-3-0-100; IPv6 ':' -> '-'
    with a leading or trailing '-' given a '0' (endpointHostname)."""
    s = ip.replace(".", "-").replace(":", "-")
    if s.startswith("-"):
        s = "0" + s
    if s.endswith("-"):
        s += "0"
    return s


def reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def _a(ip: str) -> str:
    return f"{'AAAA' if ':' in ip else 'A'} {ip}"


class ClusterDNS:
    """The cluster's DNS: the coredns pod, the kube-dns Service, the zone and the pods'
    resolv.conf. Made by Cluster.cluster_dns()."""

    def __init__(self, k: Cluster, node: K8sNode | str, *, zone: str = ZONE, ip: str | None = None) -> None:
        from nsbox.kits.k8s.services import Port

        if not isinstance(zone, str) or not is_name(zone) or zone.endswith("."):
            raise ValidationError(f"k8s cluster DNS: the cluster domain is a DNS name, not {zone!r}")
        ip = ip or str(k.service_net.network_address + 10)  # kubeadm's GetDNSIP: the 10th address
        if any(s.cluster_ip == ip for s in k.services):
            raise ValidationError(f"k8s cluster DNS: {ip} is taken by another Service: make the cluster DNS "
                                  f"before the Services (kubeadm installs it first)")
        self.k = k
        self.zone = zone.lower()
        self.ip = ip
        self.records: tuple[tuple[str, str], ...] = ()
        self._pod: Any = None
        k.dns = self
        pod = k.pod(node, DNS_POD, namespace=DNS_NAMESPACE, labels=dict(DNS_LABELS))
        pod.servers.append(Server("dns", 53))
        self._pod = pod
        self.service: ServiceHandle = k.service(DNS_SERVICE, Port(53, proto="UDP", name="dns"),
                                                selector=dict(DNS_LABELS), namespace=DNS_NAMESPACE, cluster_ip=ip)

    @property
    def pod(self) -> Any:
        return self._pod

    def svc_name(self, svc: ServiceHandle) -> str:
        return f"{svc.name}.{svc.namespace}.svc.{self.zone}"

    def resolver(self, namespace: str) -> Resolver:
        """The resolv.conf kubelet writes for a ClusterFirst pod of NAMESPACE (dns.go:
        nameserver = clusterDNS, search = ns.svc.zone svc.zone zone, options ndots:5)."""
        z = self.zone
        return Resolver((self.ip,), (f"{namespace}.svc.{z}", f"svc.{z}", z), (NDOTS,))

    def zone_records(self) -> list[tuple[str, str]]:
        """The zone, from the cluster's Services and pods (see the module docstring)."""
        from nsbox.kits.k8s.services import endpoint_pods

        k, z = self.k, self.zone
        out: list[tuple[str, str]] = [(f"dns-version.{z}", f"TXT {SPEC_VERSION}")]
        for svc in k.services:
            base = self.svc_name(svc)
            named = [p for p in svc.ports if p.name]
            if svc.api.type == "ExternalName":
                out.append((base, f"CNAME {svc.external_name}."))
            elif not svc.headless:
                for ip in (svc.cluster_ip, *([svc.cluster_ip6] if svc.cluster_ip6 else [])):
                    out.append((base, _a(ip)))  # a dual-stack Service: A and AAAA
                    out.append((reverse(ip), f"PTR {base}."))
                out += [(f"_{p.name}._{p.l4}.{base}", f"SRV 0 100 {p.port} {base}.") for p in named]
            else:
                eps = sorted(endpoint_pods(k, svc), key=lambda p: ipaddress.ip_address(k.pod_ip(p)))
                weight = max(1, 100 // len(eps)) if eps else 0
                for p in eps:
                    ip = k.pod_ip(p)
                    host = self.hostname(svc, p) or dashed(ip)
                    out += [(base, _a(ip)), (f"{host}.{base}", _a(ip)), (reverse(ip), f"PTR {host}.{base}.")]
                    out += [(f"_{q.name}._{q.l4}.{base}", f"SRV 0 {weight} {q.target} {host}.{base}.")
                            for q in named]
        for pod in k.labels:
            ip = k.pod_ip(pod)
            out.append((f"{dashed(ip)}.{k.namespace_of(pod)}.pod.{z}", _a(ip)))
        return out

    def hostname(self, svc: ServiceHandle, pod: str) -> str:
        """The endpoint's hostname (ShouldSetHostname): the pod's spec.hostname when its
        spec.subdomain names SVC in the pod's namespace, else ''."""
        hostname, subdomain = self.k.hostnames.get(pod, ("", ""))
        if hostname and subdomain == svc.name and self.k.namespace_of(pod) == svc.namespace:
            return hostname
        return ""

    def refresh(self) -> None:
        """After a sync: the zone the server answers, every pod's resolv.conf."""
        if self._pod is None:
            return
        self.records = tuple(self.zone_records())
        servers = self._pod.servers
        for i, s in enumerate(servers):
            if s.kind == "dns" and s.port == 53:
                servers[i] = dataclasses.replace(s, records=self.records)
        lab = self.k.lab
        for pod in self.k.labels:
            if pod != DNS_POD:
                lab.nodes[pod].resolver = self.resolver(self.k.namespace_of(pod))

    def expect(self, src: Any, name: str, answer: str | list[str] | None, *, qtype: str = "A",
               check_name: str | None = None) -> Any:
        """SRC asks the cluster DNS (the kube-dns Service's address, through kube-proxy's
        DNAT) for NAME's QTYPE records. ANSWER: the records' data (a list: every one, in any
        order) as dig +short prints them, or None for NXDOMAIN."""
        if qtype not in QTYPES:
            raise ValidationError(f"k8s dns check {name!r}: qtype is one of {', '.join(QTYPES)}, not {qtype!r}")
        if not is_name(name):
            raise ValidationError(f"k8s dns check: {name!r} is not a DNS name")
        if isinstance(answer, (list, tuple)):
            answer = ", ".join(sorted(answer))
        query = name if qtype == "A" and (answer is None or "," not in answer) else f"{qtype} {name}"
        s = src if isinstance(src, str) else src.name
        return self.k.lab.expect_dns(src, self.ip, query, answer,
                                     check_name=check_name or f"dns {s}: {qtype} {name}")
