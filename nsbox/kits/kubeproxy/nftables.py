"""kube-proxy's nftables mode as a pure renderer.

A port of `syncProxyRules` / `setupNFTables` in kubernetes/kubernetes
pkg/proxy/nftables/proxier.go at the commit of the reference dumps (81810de635aa, after the
June 2025 base-chain change: filter-prerouting-pre-dnat / filter-output-pre-dnat at -110,
filter-forward/input/output at 0, the cluster-ips set and cluster-ips-check chain). The
output is the whole `ip kube-proxy` table as `nft` commands ("add table", "add set", "add
chain", "add rule", "add element"), the form of knftables' fake `Dump()` that upstream's
tests compare, and loadable as it is with `nft -f`.

`Proxier` keeps what kube-proxy keeps between syncs: service and endpoint chains that are
no longer used are flushed at once and deleted only in a sync at least one second later
(kernels before 6.2 notice a dropped map reference late), affinity sets are deleted at once.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Iterable

from nsbox.kits.kubeproxy import names
from nsbox.kits.kubeproxy.iptables import node_port_ips
from nsbox.kits.kubeproxy.model import (EndpointInfo, EndpointSlice, PortInfo, ProxierConfig, Service,
                                        categorize, endpoints_for, service_ports,
                                        slices_by_service)

TABLE = "kube-proxy"
STALE_CHAIN_DELAY = 1.0  # seconds a flushed chain waits before it is deleted


def family_words(cfg: ProxierConfig) -> tuple[str, str]:
    """("ip", "ipv4_addr") or ("ip6", "ipv6_addr")."""
    return ("ip", "ipv4_addr") if cfg.family == 4 else ("ip6", "ipv6_addr")


@dataclass
class Ruleset:
    """The table's objects in kube-proxy's write order, each kind in its own list."""
    family: str
    table: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    active_chains: set[str] = field(default_factory=set)
    active_affinity_sets: set[str] = field(default_factory=set)

    def prefix(self, kind: str) -> str:
        return f"add {kind} {self.family} {TABLE}"

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.append(f"{self.prefix('chain')} {name}" + (f" {{ {spec} ; }}" if spec else ""))

    def rule(self, chain: str, text: str, comment: str | None = None) -> None:
        self.rules.append(f"{self.prefix('rule')} {chain} {text}" + (f' comment "{comment}"' if comment else ""))

    def element(self, target: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        body = key + (f' comment "{comment}"' if comment else "") + (f" : {value}" if value else "")
        self.elements.append(f"{self.prefix('element')} {target} {{ {body} }}")

    def text(self, stale_chains: Iterable[str] = ()) -> str:
        """The `nft -f` input: objects before the rules and elements that name them."""
        stale = [f"{self.prefix('chain')} {c}" for c in sorted(stale_chains)]
        return "\n".join(self.table + self.sets + self.maps + self.chains + stale
                         + self.rules + self.elements) + "\n"


def _base(rs: Ruleset, cfg: ProxierConfig) -> None:
    """setupNFTables: the table, its sets, maps, base chains and fixed rules."""
    ip, addr = family_words(cfg)
    rs.table.append(f'add table {rs.family} {TABLE} {{ comment "rules for kube-proxy" ; }}')
    rs.sets.append(f'{rs.prefix("set")} cluster-ips {{ type {addr} ; comment "Active ClusterIPs" ; }}')
    rs.sets.append(f'{rs.prefix("set")} nodeport-ips {{ type {addr} ; comment "IPs that accept NodePort traffic" ; }}')
    for name, key, comment in (
            ("firewall-ips", f"{addr} . inet_proto . inet_service",
             "destinations that are subject to LoadBalancerSourceRanges"),
            ("no-endpoint-nodeports", "inet_proto . inet_service",
             "vmap to drop or reject packets to service nodeports with no endpoints"),
            ("no-endpoint-services", f"{addr} . inet_proto . inet_service",
             "vmap to drop or reject packets to services with no endpoints"),
            ("service-ips", f"{addr} . inet_proto . inet_service", "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
            ("service-nodeports", "inet_proto . inet_service", "NodePort traffic")):
        rs.maps.append(f'{rs.prefix("map")} {name} {{ type {key} : verdict ; comment "{comment}" ; }}')

    for name, spec in (
            ("cluster-ips-check", ""),
            ("filter-prerouting-pre-dnat", "type filter hook prerouting priority -110"),
            ("filter-output-pre-dnat", "type filter hook output priority -110"),
            ("filter-forward", "type filter hook forward priority 0"),
            ("filter-input", "type filter hook input priority 0"),
            ("filter-output", "type filter hook output priority 0"),
            ("firewall-check", ""), ("mark-for-masquerade", ""), ("masquerading", ""),
            ("nat-output", "type nat hook output priority -100"),
            ("nat-postrouting", "type nat hook postrouting priority 100"),
            ("nat-prerouting", "type nat hook prerouting priority -100"),
            ("nodeport-endpoints-check", ""),
            ("reject-chain", 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports"'),
            ("services", ""), ("service-endpoints-check", "")):
        rs.chain(name, spec)

    mark = cfg.masquerade_mark
    cidrs = ", ".join(str(ipaddress.ip_network(c, strict=False)) for c in cfg.service_cidrs
                      if ipaddress.ip_network(c, strict=False).version == cfg.family)
    rs.rule("cluster-ips-check", f"{ip} daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    if cidrs:
        rs.rule("cluster-ips-check", f"{ip} daddr {{ {cidrs} }} drop", "Drop traffic to unallocated ClusterIPs")
    rs.rule("filter-prerouting-pre-dnat", "ct state new jump firewall-check")
    rs.rule("filter-forward", "ct state new jump service-endpoints-check")
    rs.rule("filter-forward", "ct state new jump cluster-ips-check")
    rs.rule("filter-input", "ct state new jump nodeport-endpoints-check")
    rs.rule("filter-input", "ct state new jump service-endpoints-check")
    rs.rule("filter-output", "ct state new jump service-endpoints-check")
    rs.rule("filter-output-pre-dnat", "ct state new jump firewall-check")
    rs.rule("filter-output", "ct state new jump cluster-ips-check")
    rs.rule("firewall-check", f"{ip} daddr . meta l4proto . th dport vmap @firewall-ips")
    rs.rule("mark-for-masquerade", f"mark set mark or {mark}")
    rs.rule("masquerading", f"mark and {mark} == 0 return")
    rs.rule("masquerading", f"mark set mark xor {mark}")
    rs.rule("masquerading", "masquerade fully-random")
    rs.rule("nat-output", "jump services")
    rs.rule("nat-postrouting", "jump masquerading")
    rs.rule("nat-prerouting", "jump services")
    rs.rule("nodeport-endpoints-check", f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    rs.rule("reject-chain", "reject")
    rs.rule("services", f"{ip} daddr . meta l4proto . th dport vmap @service-ips")
    rs.rule("services", f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    for node_ip in node_port_ips(cfg):
        if node_ip.is_loopback:  # "localhost NodePorts are not supported"
            continue
        rs.element("nodeport-ips", str(node_ip))
    rs.rule("service-endpoints-check", f"{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services")


def _service(rs: Ruleset, cfg: ProxierConfig, svc: PortInfo, endpoints: list[EndpointInfo]) -> None:
    """The per-ServicePort part of syncProxyRules."""
    ip, addr = family_words(cfg)
    proto, port, name = svc.protocol, svc.port, svc.name
    base = names.nft_port_base(svc)
    cluster_c, local_c, ext_c, fw_c = (f"service-{base}", f"local-{base}", f"external-{base}", f"firewall-{base}")
    cluster_eps, local_eps, reachable, has_eps = categorize(endpoints, svc)

    ep_bases = {ep.text: names.nft_endpoint_base(svc, ep) for ep in endpoints}  # hashed once

    def ep_chain(ep: EndpointInfo) -> str:
        return "endpoint-" + ep_bases[ep.text]

    def aff_set(ep: EndpointInfo) -> str:
        return "affinity-" + ep_bases[ep.text]

    chains: list[str] = []

    def ensure(chain: str) -> None:
        if chain not in rs.active_chains:
            rs.active_chains.add(chain)
            chains.append(chain)

    for ep in reachable:
        ensure(ep_chain(ep))
    uses_cluster = bool(cluster_eps) and svc.uses_cluster_endpoints
    if uses_cluster:
        ensure(cluster_c)
    uses_local = bool(local_eps) and svc.uses_local_endpoints
    if uses_local:
        ensure(local_c)
    internal_chain, has_internal = cluster_c, has_eps
    if svc.internal_policy_local:
        internal_chain = local_c
        has_internal = has_internal and bool(local_eps)
    external_policy_chain, has_external = cluster_c, has_eps
    if svc.external_policy_local:
        external_policy_chain = local_c
        has_external = has_external and bool(local_eps)
    uses_ext = has_eps and svc.externally_accessible
    if uses_ext:
        ensure(ext_c)

    if not has_eps:
        int_verdict = ext_verdict = "goto reject-chain"
    else:
        int_verdict = "" if has_internal else "drop"
        ext_verdict = "" if has_external else "drop"

    key = f"{svc.cluster_ip} . {proto} . {port}"
    rs.element("cluster-ips", str(svc.cluster_ip))
    if has_internal:
        rs.element("service-ips", key, f"goto {internal_chain}")
    else:
        rs.element("no-endpoint-services", key, int_verdict, comment=name)
    for eip in svc.external_ips:
        k = f"{eip} . {proto} . {port}"
        if has_eps:
            rs.element("service-ips", k, f"goto {ext_c}")
        if not has_external:
            rs.element("no-endpoint-services", k, ext_verdict, comment=name)

    uses_fw = bool(svc.lb_vips) and bool(svc.lb_source_ranges)
    rules: list[tuple[str, str, str | None]] = []
    if uses_fw:
        ensure(fw_c)
        sources = [str(c) for c in svc.lb_source_ranges]
        node_ip = ipaddress.ip_address(cfg.node_ip)
        if any(c.version == node_ip.version and node_ip in c for c in svc.lb_source_ranges):
            sources += [str(v) for v in svc.lb_vips]
        rules.append((fw_c, f"{ip} saddr != {{ {' , '.join(sources)} }} drop", None))
    for vip in svc.lb_vips:
        k = f"{vip} . {proto} . {port}"
        if has_eps:
            rs.element("service-ips", k, f"goto {ext_c}")
        if uses_fw:
            rs.element("firewall-ips", k, f"goto {fw_c}")
    if not has_external:
        for vip in svc.lb_vips:
            rs.element("no-endpoint-services", f"{vip} . {proto} . {port}", ext_verdict, comment=name)
    if svc.node_port:
        k = f"{proto} . {svc.node_port}"
        if has_eps:
            rs.element("service-nodeports", k, f"goto {ext_c}")
        if not has_external:
            rs.element("no-endpoint-nodeports", k, ext_verdict, comment=name)

    if has_internal:
        if cfg.masquerade_all:
            rules.append((internal_chain, f"{ip} daddr {svc.cluster_ip} jump mark-for-masquerade", None))
        elif cfg.cluster_cidr:
            rules.append((internal_chain, f"{ip} daddr {svc.cluster_ip} {ip} saddr != {cfg.cluster_cidr} "
                          "jump mark-for-masquerade", None))
    if uses_ext:
        if not svc.external_policy_local:
            rules.append((ext_c, "jump mark-for-masquerade", None))
        else:
            if cfg.cluster_cidr:
                rules.append((ext_c, f"{ip} saddr {cfg.cluster_cidr} goto {cluster_c}", "short-circuit pod traffic"))
            rules.append((ext_c, "fib saddr type local jump mark-for-masquerade", "masquerade local traffic"))
            rules.append((ext_c, f"fib saddr type local goto {cluster_c}", "short-circuit local traffic"))
        if has_external:
            rules.append((ext_c, f"goto {external_policy_chain}", None))

    if svc.affinity_client_ip:
        for ep in reachable:
            rs.sets.append(f"{rs.prefix('set')} {aff_set(ep)} {{ type {addr} ; flags dynamic,timeout ; "
                           f"timeout {svc.sticky_seconds}s ; }}")
            rs.active_affinity_sets.add(aff_set(ep))

    for used, chain, eps in ((uses_cluster, cluster_c, cluster_eps), (uses_local, local_c, local_eps)):
        if not used:
            continue
        if svc.affinity_client_ip:
            for ep in eps:
                rules.append((chain, f"{ip} saddr @{aff_set(ep)} goto {ep_chain(ep)}", None))
        vmap = " , ".join(f"{i} : goto {ep_chain(ep)}" for i, ep in enumerate(eps))
        rules.append((chain, f"numgen random mod {len(eps)} vmap {{ {vmap} }}", None))

    for ep in reachable:
        chain = ep_chain(ep)
        rules.append((chain, f"{ip} saddr {ep.ip} jump mark-for-masquerade", None))
        if svc.affinity_client_ip:
            rules.append((chain, f"update @{aff_set(ep)} {{ {ip} saddr }}", None))
        rules.append((chain, f"meta l4proto {proto} dnat to {ep}", None))

    for chain in chains:
        rs.chain(chain)
    for chain, text, comment in rules:
        rs.rule(chain, text, comment)


def render(cfg: ProxierConfig, services: Iterable[Service], slices: Iterable[EndpointSlice]) -> Ruleset:
    """The table kube-proxy's sync leaves, without stale chains (see `Proxier`)."""
    slices = list(slices)
    rs = Ruleset(family="ip" if cfg.family == 4 else "ip6")
    _base(rs, cfg)
    ports = sorted((p for s in services for p in service_ports(s, cfg)), key=lambda p: p.key)
    index = slices_by_service(slices)
    for port in ports:
        _service(rs, cfg, port, endpoints_for(port, index, cfg))
    return rs


def is_service_chain(name: str) -> bool:
    """Service and endpoint chains are the ones with a "/" in their name."""
    return "/" in name


@dataclass
class Proxier:
    """kube-proxy's nftables proxier between syncs: the service/endpoint chains in the
    kernel and the stale ones waiting to be deleted (name -> when they went stale)."""
    cfg: ProxierConfig = field(default_factory=lambda: ProxierConfig(node_port_addresses="primary"))
    kernel_chains: set[str] = field(default_factory=set)
    stale_chains: dict[str, float] = field(default_factory=dict)
    clock: float = 0.0  # seconds; only differences matter

    def age_stale_chains(self, seconds: float) -> None:
        """What upstream's test does to make stale chains old enough to delete."""
        self.stale_chains = {c: t - seconds for c, t in self.stale_chains.items()}

    def sync(self, services: Iterable[Service], slices: Iterable[EndpointSlice],
             now: float | None = None) -> str:
        """One syncProxyRules; returns the table as the kernel holds it afterwards."""
        start = self.clock if now is None else now
        for chain, when in list(self.stale_chains.items()):
            if when < start - STALE_CHAIN_DELAY:
                del self.stale_chains[chain]
                self.kernel_chains.discard(chain)
        rs = render(self.cfg, services, slices)
        for chain in self.kernel_chains:
            if is_service_chain(chain):
                if chain not in rs.active_chains:
                    self.stale_chains[chain] = start
                else:
                    self.stale_chains.pop(chain, None)
        self.kernel_chains = set(rs.active_chains) | set(self.stale_chains)
        return rs.text(stale_chains=self.stale_chains)


# --- upstream's comparison: sortNFTablesTransaction (helpers_test.go) -----------------------

_KIND_ORDER = {"table": 0, "chain": 1, "rule": 2, "set": 3, "map": 4, "element": 5}


def sort_transaction(text: str) -> str:
    """Drop blank and '#' lines; stable sort by object kind (table, chain, rule, set, map,
    element) then object name; rules keep their order within a chain; elements are sorted
    by their whole line."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    def key(line: str) -> tuple:
        words = line.split()
        kind = words[1]
        if kind not in _KIND_ORDER:
            raise ValueError(f"not an 'add/flush/delete <kind>' line: {line!r}")
        name = words[4] if kind != "table" and len(words) > 4 else ""
        return (_KIND_ORDER[kind], name, line if kind == "element" else "")

    return "\n".join(sorted(lines, key=key)) + "\n"


_LOAD_ORDER = {"table": 0, "set": 1, "map": 2, "chain": 3, "rule": 4, "element": 5}


def loadable(text: str) -> str:
    """TEXT (e.g. an upstream dump, grouped per service) reordered so that `nft -f` can
    load it: every object before the rules and elements that name it. A stable reorder by
    kind: rules keep their order within a chain."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return "\n".join(sorted(lines, key=lambda ln: _LOAD_ORDER[ln.split()[1]])) + "\n"
