"""What kube-proxy knows: Services, EndpointSlices and the proxier's own settings.

The dataclasses mirror the fields of the Kubernetes API objects that kube-proxy reads
(`v1.Service`, `discovery/v1.EndpointSlice`) and the options of its fake proxier
(`NewFakeProxier` in pkg/proxy/{iptables,nftables}/proxier_test.go). From them
`service_ports()` derives kube-proxy's per-port view (pkg/proxy/serviceport.go +
service.go: family filtering, sloppy IP parsing, trimmed source ranges, the
health-check port only for `LoadBalancer` + `Local`), `endpoints_for()` the endpoints map
(pkg/proxy/endpointslicecache.go: one entry per "ip:port", sorted by that string) and
`categorize()` is `proxy.CategorizeEndpoints` (pkg/proxy/topology.go, no topology hints).
Nothing here touches the kernel.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROTOCOLS = ("TCP", "UDP", "SCTP")


def parse_ip_sloppy(text: str) -> IPAddress:
    """netutils.ParseIPSloppy: IPv4 with leading zeros is read as decimal ("010" = 10)."""
    text = text.strip()
    if ":" not in text:
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            octets = [int(p) for p in parts]
            if all(o < 256 for o in octets):  # (from an int: much faster than parsing again)
                return ipaddress.IPv4Address(octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3])
    return ipaddress.ip_address(text)


def parse_cidr_sloppy(text: str) -> IPNetwork:
    """netutils.ParseCIDRSloppy, then the network address (kube-proxy keeps the masked
    net.IPNet): " 203.0.113.000/025" -> 203.0.113.0/25."""
    addr, _, bits = text.strip().partition("/")
    return ipaddress.ip_network(f"{parse_ip_sloppy(addr)}/{int(bits)}", strict=False)


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: str = "TCP"
    node_port: int = 0
    target_port: int | str | None = None  # kube-proxy uses the EndpointSlice's port


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    type: str = "ClusterIP"  # ClusterIP | NodePort | LoadBalancer | ExternalName
    external_ips: tuple[str, ...] = ()
    load_balancer_ingress: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity: str = "None"  # None | ClientIP
    session_affinity_timeout: int = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds
    health_check_node_port: int = 0


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple[str, ...]
    node_name: str | None = None
    ready: bool | None = None  # None = condition unset: true (as the slice cache reads it)
    serving: bool | None = None  # None: true
    terminating: bool | None = None  # None: false


@dataclass(frozen=True)
class EndpointSlicePort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    service: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointSlicePort, ...]
    address_type: str = "IPv4"
    name: str = ""


@dataclass(frozen=True)
class ProxierConfig:
    """The proxier's environment (NewFakeProxier's values are the defaults)."""
    node_name: str = "test-node"
    node_ip: str = "192.168.0.2"
    family: int = 4
    cluster_cidr: str | None = "10.0.0.0/8"  # detect-local by cluster CIDR; None = no detector
    # The fake proxier's value; real kube-proxy formats 1<<masqueradeBit (default 14) itself.
    masquerade_mark: str = "0x4000"
    masquerade_all: bool = False
    localhost_node_ports: bool = True  # iptables only
    # None = all local addresses (iptables' default); a list of CIDRs otherwise, or
    # "primary" (the nftables default: the node IP only).
    node_port_addresses: tuple[str, ...] | str | None = None
    local_ips: tuple[str, ...] = ("127.0.0.1", "192.168.0.2", "192.168.1.2", "192.168.99.11",
                                  "::1", "2001:db8::1", "2001:db8:1::2")
    conntrack_tcp_liberal: bool = False
    nfacct: bool = True  # the nfacct counters exist (iptables)
    random_fully: bool = False  # iptables supports --random-fully (the fake does not)
    service_cidrs: tuple[str, ...] = ("172.30.0.0/16",)  # nftables cluster-ips-check

    def ip_family_matches(self, ip: IPAddress | IPNetwork) -> bool:
        return ip.version == self.family


# --- kube-proxy's per-port view ----------------------------------------------------------

@dataclass(frozen=True)
class PortInfo:
    """One ServicePort as kube-proxy's BaseServicePortInfo sees it."""
    namespace: str
    service: str
    port_name: str
    protocol: str  # lower case
    cluster_ip: IPAddress
    port: int
    node_port: int
    external_ips: tuple[IPAddress, ...]
    lb_vips: tuple[IPAddress, ...]
    lb_source_ranges: tuple[IPNetwork, ...]
    external_policy_local: bool
    internal_policy_local: bool
    affinity_client_ip: bool
    sticky_seconds: int
    health_check_node_port: int

    @property
    def name(self) -> str:
        """ServicePortName.String(): "ns/name:port", or "ns/name" when the port has no name."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.service, self.port_name)

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.lb_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


def service_ports(svc: Service, cfg: ProxierConfig) -> list[PortInfo]:
    """The ServicePorts kube-proxy proxies for SVC (empty for headless/ExternalName or a
    ClusterIP of the other family)."""
    if svc.type == "ExternalName" or svc.cluster_ip in ("", "None"):
        return []
    cluster_ip = parse_ip_sloppy(svc.cluster_ip)
    if not cfg.ip_family_matches(cluster_ip):
        return []
    ext_ips = tuple(ip for ip in (parse_ip_sloppy(s) for s in svc.external_ips) if cfg.ip_family_matches(ip))
    # status.loadBalancer.ingress[].ip of this family (kube-proxy does not look at the type)
    vips = tuple(ip for ip in (parse_ip_sloppy(s) for s in svc.load_balancer_ingress if s)
                 if cfg.ip_family_matches(ip))
    ranges = tuple(n for n in (parse_cidr_sloppy(s) for s in svc.load_balancer_source_ranges)
                   if cfg.ip_family_matches(n))
    external_local = svc.type in ("NodePort", "LoadBalancer") and svc.external_traffic_policy == "Local"
    health = svc.health_check_node_port if (svc.type == "LoadBalancer" and external_local) else 0
    out = []
    for p in svc.ports:
        if p.protocol not in PROTOCOLS:
            raise ValueError(f"{svc.namespace}/{svc.name}: unknown protocol {p.protocol!r}")
        out.append(PortInfo(
            namespace=svc.namespace, service=svc.name, port_name=p.name, protocol=p.protocol.lower(),
            cluster_ip=cluster_ip, port=p.port, node_port=p.node_port, external_ips=ext_ips,
            lb_vips=vips, lb_source_ranges=ranges, external_policy_local=external_local,
            internal_policy_local=svc.internal_traffic_policy == "Local",
            affinity_client_ip=svc.session_affinity == "ClientIP",
            sticky_seconds=svc.session_affinity_timeout, health_check_node_port=health))
    return out


@dataclass(frozen=True)
class EndpointInfo:
    ip: IPAddress
    port: int
    local: bool
    ready: bool
    serving: bool
    terminating: bool
    text: str = field(default="", compare=False)  # "ip:port", computed once (hot in big renders)

    def __post_init__(self) -> None:
        if not self.text:  # net.JoinHostPort
            text = f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"
            object.__setattr__(self, "text", text)

    def __str__(self) -> str:
        return self.text


def slices_by_service(slices: Iterable[EndpointSlice]) -> dict[tuple[str, str], list[EndpointSlice]]:
    """EndpointSlices grouped by (namespace, service): what `endpoints_for` looks in."""
    out: dict[tuple[str, str], list[EndpointSlice]] = {}
    for sl in slices:
        out.setdefault((sl.namespace, sl.service), []).append(sl)
    return out


def endpoints_for(port: PortInfo, slices: Iterable[EndpointSlice] | dict[tuple[str, str], list[EndpointSlice]],
                  cfg: ProxierConfig) -> list[EndpointInfo]:
    """The endpoints of PORT from every slice of its Service, as the endpoint slice cache
    merges them: matched by port name (and protocol), one per "ip:port", sorted by it.
    SLICES: all slices, or `slices_by_service()` of them (faster for many Services)."""
    found: dict[str, EndpointInfo] = {}
    if isinstance(slices, dict):
        slices = slices.get((port.namespace, port.service), [])
    for sl in slices:
        if (sl.namespace, sl.service) != (port.namespace, port.service):
            continue
        if sl.address_type != ("IPv4" if cfg.family == 4 else "IPv6"):
            continue
        for sp in sl.ports:
            if sp.name != port.port_name or sp.protocol.lower() != port.protocol or not sp.port:
                continue
            for ep in sl.endpoints:
                if not ep.addresses:
                    continue
                info = EndpointInfo(
                    ip=parse_ip_sloppy(ep.addresses[0]), port=sp.port,
                    local=bool(cfg.node_name) and ep.node_name == cfg.node_name,
                    ready=ep.ready is not False, serving=ep.serving is not False,
                    terminating=bool(ep.terminating))
                # the same ip:port twice (a pod moving between slices, or an IP reused
                # while the old pod terminates): a later one wins unless it is terminating
                if info.text not in found or not info.terminating:
                    found[info.text] = info
    return [found[k] for k in sorted(found)]


def categorize(endpoints: list[EndpointInfo], port: PortInfo
               ) -> tuple[list[EndpointInfo], list[EndpointInfo], list[EndpointInfo], bool]:
    """proxy.CategorizeEndpoints: (cluster, local, all locally reachable, has any)."""
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    if port.uses_cluster_endpoints:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:  # fall back to serving-terminating endpoints
            cluster = [e for e in endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not port.uses_local_endpoints:
        return cluster, local, cluster, has_any
    local_ready = local_term = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.local
        elif e.serving and e.terminating:
            has_any = True
            local_term = local_term or e.local
    use_terminating = False
    if local_ready:
        local = [e for e in endpoints if e.local and e.ready]
    elif local_term:
        use_terminating = True
        local = [e for e in endpoints if e.local and e.serving and e.terminating]
    if not port.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not use_terminating:
        return cluster, local, cluster, has_any
    merged = {str(e): e for e in cluster}
    merged.update({str(e): e for e in local})
    return cluster, local, [merged[k] for k in sorted(merged)], has_any


# --- building the objects from the references' JSON sidecars ------------------------------

def service_from_dict(d: dict[str, Any]) -> Service:
    """A Service from the sidecar form ("ns", "name", "type", "clusterIP", "ports": [...])."""
    ports = tuple(ServicePort(name=p.get("name", ""), port=int(p["port"]), protocol=p.get("protocol", "TCP"),
                              node_port=int(p.get("nodePort", 0)), target_port=p.get("targetPort"))
                  for p in d.get("ports", []))
    aff = d.get("sessionAffinityConfig", {}).get("clientIP", {}).get("timeoutSeconds", 10800)
    return Service(
        namespace=d["ns"], name=d["name"], cluster_ip=d.get("clusterIP", ""), ports=ports,
        type=d.get("type", "ClusterIP") or "ClusterIP",
        external_ips=tuple(d.get("externalIPs", ())),
        load_balancer_ingress=tuple(d.get("loadBalancerIngress", ())),
        load_balancer_source_ranges=tuple(d.get("loadBalancerSourceRanges", ())),
        external_traffic_policy=d.get("externalTrafficPolicy", "Cluster") or "Cluster",
        internal_traffic_policy=d.get("internalTrafficPolicy", "Cluster") or "Cluster",
        session_affinity=d.get("sessionAffinity", "None"), session_affinity_timeout=int(aff),
        health_check_node_port=int(d.get("healthCheckNodePort", 0)))


def slice_from_dict(d: dict[str, Any]) -> EndpointSlice:
    eps = []
    for e in d.get("endpoints", []):
        cond = e.get("conditions", {})
        eps.append(Endpoint(addresses=tuple(e.get("addresses", ())), node_name=e.get("nodeName"),
                            ready=cond.get("ready"), serving=cond.get("serving"),
                            terminating=cond.get("terminating")))
    ports = tuple(EndpointSlicePort(name=p.get("name", ""), port=int(p.get("port", 0)),
                                    protocol=p.get("protocol", "TCP")) for p in d.get("ports", []))
    return EndpointSlice(namespace=d["ns"], service=d["service"], endpoints=tuple(eps), ports=ports,
                         address_type=d.get("addressType", "IPv4"), name=d.get("name", ""))


def load_scenario(path: str) -> tuple[list[Service], list[EndpointSlice]]:
    """Services and EndpointSlices of a reference sidecar (.json)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return ([service_from_dict(s) for s in data.get("services", [])],
            [slice_from_dict(s) for s in data.get("endpointSlices", [])])


@dataclass
class Cluster:
    """The API objects kube-proxy watches (a tiny informer cache)."""
    services: dict[tuple[str, str], Service] = field(default_factory=dict)
    slices: dict[tuple[str, str, str], EndpointSlice] = field(default_factory=dict)

    def set_service(self, svc: Service) -> None:
        self.services[(svc.namespace, svc.name)] = svc

    def delete_service(self, namespace: str, name: str) -> None:
        self.services.pop((namespace, name), None)

    def set_slice(self, sl: EndpointSlice) -> None:
        self.slices[(sl.namespace, sl.service, sl.name)] = sl

    def delete_slice(self, namespace: str, service: str, name: str = "") -> None:
        self.slices.pop((namespace, service, name), None)
