"""kube-proxy's iptables mode as a pure renderer.

A port of `syncProxyRules` in kubernetes/kubernetes pkg/proxy/iptables/proxier.go
(commit 531be81208e2274ef42e72525a26610a9622bcdf, the v1.34 development line): from the
Services, EndpointSlices and the proxier's settings, the `iptables-restore` payload
kube-proxy writes, line for line and argument for argument. kube-proxy walks its service
map in Go's random order; this port walks it sorted, one of the orders kube-proxy may
produce (upstream's tests compare after `sort_restore()`, which is ported too).

`Proxier` keeps the state kube-proxy keeps between syncs, so partial syncs come out as
kube-proxy writes them: after a successful full sync only the chains of Services whose
Service or EndpointSlices changed are rewritten; stale KUBE-SVC/SEP/... chains (those that
exist in the kernel but are no longer used) are flushed and deleted with `-X`; a failed
restore forces the next sync to be full.

`jump_rules()` lists the rules kube-proxy inserts with `iptables -I` outside the payload.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from nsbox.kits.kubeproxy import names
from nsbox.kits.kubeproxy.model import (EndpointInfo, EndpointSlice, PortInfo, ProxierConfig, Service,
                                        categorize, endpoints_for, service_ports,
                                        slices_by_service)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's anti-martian chain, duplicated by kube-proxy
LARGE_CLUSTER_ENDPOINTS = 1000  # largeClusterEndpointsThreshold
NFACCT_INVALID = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NP = "localhost_nps_accepted_pkts"

# iptablesJumpChains + iptablesKubeletJumpChains: (table, dst, src, comment, extra args)
JUMP_CHAINS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals",
     ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals",
     ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ()),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ()),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ()),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", ()),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", ()),
    ("filter", KUBE_FIREWALL, "INPUT", "", ()),
    ("filter", KUBE_FIREWALL, "OUTPUT", "", ()),
)


def _q(text: str) -> str:
    """A comment as kube-proxy writes it: quoted when it holds a space (the Go code
    quotes by hand exactly those comments)."""
    return f'"{text}"' if " " in text else text


def jump_rules() -> list[tuple[str, list[str]]]:
    """[(table, iptables -I arguments)] in the order kube-proxy ensures them; each is
    *prepended* (`-I CHAIN 1`) when absent, so on empty base chains the listing order is
    the reverse of this list."""
    out = []
    for table, dst, src, comment, extra in JUMP_CHAINS:
        args = [src, *extra]
        if comment:
            args += ["-m", "comment", "--comment", comment]
        out.append((table, args + ["-j", dst]))
    return out


def probability(n: int) -> str:
    """computeProbability: fmt.Sprintf("%0.10f", 1.0/float64(n))."""
    return f"{1.0 / n:0.10f}"


def match_all(cfg: ProxierConfig) -> bool:
    """NodePortAddresses.MatchAll: no list, or a zero-length CIDR of this family in it."""
    if cfg.node_port_addresses is None:
        return True
    if isinstance(cfg.node_port_addresses, str):  # "primary"
        return False
    return any(n.prefixlen == 0 and n.version == cfg.family
               for n in (ipaddress.ip_network(c, strict=False) for c in cfg.node_port_addresses))


def _localhost_node_ports(cfg: ProxierConfig) -> bool:
    """NewProxier: localhost NodePorts only for IPv4 and only when nodePortAddresses
    contains 127.0.0.1 (nil = every address does)."""
    if cfg.family != 4 or not cfg.localhost_node_ports:
        return False
    if match_all(cfg):
        return True
    if isinstance(cfg.node_port_addresses, str):  # "primary"
        return False
    return any(ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(c, strict=False)
               for c in cfg.node_port_addresses)


def node_port_ips(cfg: ProxierConfig) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """NodePortAddresses.GetNodeIPs: the node's addresses (of this family) inside the
    configured CIDRs; "primary" = the node IP."""
    if cfg.node_port_addresses == "primary" or cfg.node_port_addresses is None:
        return [ipaddress.ip_address(cfg.node_ip)]
    nets = [ipaddress.ip_network(c, strict=False) for c in cfg.node_port_addresses]
    nets = [n for n in nets if n.version == cfg.family]
    out = []
    for s in cfg.local_ips:
        ip = ipaddress.ip_address(s)
        if ip.version == cfg.family and any(ip in n for n in nets) and ip not in out:
            out.append(ip)
    return out


@dataclass
class SyncResult:
    payload: str  # the iptables-restore input, in kube-proxy's write order
    active_nat_chains: set[str]
    deleted_chains: list[str]
    full: bool
    nat_rules_total: int  # the sync_proxy_rules_iptables_total{table="nat"} metric


@dataclass
class _PortPlan:
    port: PortInfo
    endpoints: list[EndpointInfo]


def _plan(cfg: ProxierConfig, services: Iterable[Service], slices: list[EndpointSlice]) -> list[_PortPlan]:
    plans = []
    index = slices_by_service(slices)
    for svc in services:
        for port in service_ports(svc, cfg):
            plans.append(_PortPlan(port, endpoints_for(port, index, cfg)))
    plans.sort(key=lambda p: p.port.key)
    return plans


def render(cfg: ProxierConfig, services: Iterable[Service], slices: Iterable[EndpointSlice], *,
           changed: set[tuple[str, str]] | None = None,
           existing_nat_chains: Iterable[str] = ()) -> SyncResult:
    """One run of syncProxyRules. CHANGED = None is a full sync; otherwise the (namespace,
    name) of the Services whose Service or EndpointSlices changed since the last successful
    sync (only their SVC/SVL/EXT/FW/SEP chains are written). EXISTING_NAT_CHAINS is what
    `iptables-save -t nat` would list (kube-proxy deletes the unused service chains)."""
    slices = list(slices)
    full = changed is None
    mark = cfg.masquerade_mark
    is_v6 = cfg.family == 6
    localhost_np = _localhost_node_ports(cfg)
    detect_cidr = cfg.cluster_cidr

    filter_chains: list[str] = []
    filter_rules: list[str] = []
    nat_chains: list[str] = []
    nat_rules: list[str] = []
    skipped_rules = 0

    for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL):
        filter_chains.append(f":{c} - [0:0]")
    for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        nat_chains.append(f":{c} - [0:0]")

    nat_rules.append(f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN")
    nat_rules.append(f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}")
    masq = f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    nat_rules.append(masq + (" --random-fully" if cfg.random_fully else ""))
    nat_rules.append(f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}")

    if not is_v6 and localhost_np:
        filter_chains.append(f":{KUBE_FIREWALL} - [0:0]")
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")

    active: set[str] = set()
    plans = _plan(cfg, services, slices)
    total_endpoints = sum(len(p.endpoints) for p in plans)
    large = total_endpoints > LARGE_CLUSTER_ENDPOINTS

    def comment(text: str) -> str:
        return "" if large else f" -m comment --comment {_q(text)}"

    for plan in plans:
        svc = plan.port
        proto = svc.protocol
        name = svc.name
        cluster_eps, local_eps, reachable, has_eps = categorize(plan.endpoints, svc)
        suffix = names.port_proto_hash(svc)
        svc_c, svl_c, ext_c, fw_c = (f"KUBE-SVC-{suffix}", f"KUBE-SVL-{suffix}", f"KUBE-EXT-{suffix}",
                                     f"KUBE-FW-{suffix}")
        sep_names = {ep.text: names.sep_chain(svc, ep) for ep in plan.endpoints}
        uses_cluster = bool(cluster_eps) and svc.uses_cluster_endpoints
        uses_local = bool(local_eps) and svc.uses_local_endpoints

        internal_chain, has_internal = svc_c, has_eps
        if svc.internal_policy_local:
            internal_chain = svl_c
            if not local_eps:
                has_internal = False
        external_policy_chain, has_external = svc_c, has_eps
        if svc.external_policy_local:
            external_policy_chain = svl_c
            if not local_eps:
                has_external = False
        uses_ext = has_eps and svc.externally_accessible
        lb_chain = ext_c
        uses_fw = has_eps and bool(svc.lb_vips) and bool(svc.lb_source_ranges)
        if uses_fw:
            lb_chain = fw_c

        if not has_eps:
            int_target, int_comment = "REJECT", f'"{name} has no endpoints"'
            ext_target, ext_comment = int_target, int_comment
        else:
            int_target = int_comment = ext_target = ext_comment = ""
            if not has_internal:
                int_target, int_comment = "DROP", f'"{name} has no local endpoints"'
            if not has_external:
                ext_target, ext_comment = "DROP", f'"{name} has no local endpoints"'

        match = f"-m {proto} -p {proto}"
        cip, port = svc.cluster_ip, svc.port
        if has_internal:
            nat_rules.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" {match} '
                             f"-d {cip} --dport {port} -j {internal_chain}")
        else:
            filter_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {int_comment} {match} "
                                f"-d {cip} --dport {port} -j {int_target}")
        for eip in svc.external_ips:
            if has_eps:
                nat_rules.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} external IP" {match} '
                                 f"-d {eip} --dport {port} -j {ext_c}")
            if not has_external:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                                    f"-d {eip} --dport {port} -j {ext_target}")
        for vip in svc.lb_vips:
            if has_eps:
                nat_rules.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" {match} '
                                 f"-d {vip} --dport {port} -j {lb_chain}")
            if uses_fw:
                filter_rules.append(f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not accepted '
                                    f'by {fw_c}" {match} -d {vip} --dport {port} -j DROP')
        if not has_external:
            for vip in svc.lb_vips:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                                    f"-d {vip} --dport {port} -j {ext_target}")
        if svc.node_port:
            if has_eps:
                if localhost_np and cfg.family == 4 and cfg.nfacct:
                    nat_rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} -d 127.0.0.0/8 "
                                     f"--dport {svc.node_port} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NP} "
                                     f"-j {ext_c}")
                nat_rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} "
                                 f"--dport {svc.node_port} -j {ext_c}")
            if not has_external:
                filter_rules.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                    f"-m addrtype --dst-type LOCAL {match} --dport {svc.node_port} -j {ext_target}")
        if svc.health_check_node_port:
            filter_rules.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{name} health check node port" '
                                f"-m tcp -p tcp --dport {svc.health_check_node_port} -j ACCEPT")

        # Unchanged services in a partial sync: computed, not written.
        write = full or (svc.namespace, svc.service) in changed  # type: ignore[operator]
        chains_out: list[str] = []
        rules_out: list[str] = []

        if has_internal:
            args = (f'-m comment --comment "{name} cluster IP" {match} -d {cip} --dport {port}')
            if cfg.masquerade_all:
                rules_out.append(f"-A {internal_chain} {args} -j {KUBE_MARK_MASQ}")
            elif detect_cidr:
                rules_out.append(f"-A {internal_chain} {args} ! -s {detect_cidr} -j {KUBE_MARK_MASQ}")

        if uses_ext:
            chains_out.append(ext_c)
            active.add(ext_c)
            if not svc.external_policy_local:
                rules_out.append(f'-A {ext_c} -m comment --comment "masquerade traffic for {name} external '
                                 f'destinations" -j {KUBE_MARK_MASQ}')
            else:
                if detect_cidr:
                    rules_out.append(f'-A {ext_c} -m comment --comment "pod traffic for {name} external '
                                     f'destinations" -s {detect_cidr} -j {svc_c}')
                rules_out.append(f'-A {ext_c} -m comment --comment "masquerade LOCAL traffic for {name} external '
                                 f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
                rules_out.append(f'-A {ext_c} -m comment --comment "route LOCAL traffic for {name} external '
                                 f'destinations" -m addrtype --src-type LOCAL -j {svc_c}')
            if has_external:
                rules_out.append(f"-A {ext_c} -j {external_policy_chain}")

        if uses_fw:
            chains_out.append(fw_c)
            active.add(fw_c)
            head = f'-A {fw_c} -m comment --comment "{name} loadbalancer IP"'
            allow_node = False
            node_ip = ipaddress.ip_address(cfg.node_ip)
            for cidr in svc.lb_source_ranges:
                rules_out.append(f"{head} -s {cidr} -j {ext_c}")
                if node_ip.version == cidr.version and node_ip in cidr:
                    allow_node = True
            if allow_node:
                for vip in svc.lb_vips:
                    rules_out.append(f"{head} -s {vip} -j {ext_c}")
            rules_out.append(f'-A {fw_c} -m comment --comment "other traffic to {name} will be dropped by '
                             f'{KUBE_PROXY_FIREWALL}"')

        for used, chain, eps in ((uses_cluster, svc_c, cluster_eps), (uses_local, svl_c, local_eps)):
            if not used:
                continue
            chains_out.append(chain)
            active.add(chain)
            if svc.affinity_client_ip:
                for ep in eps:
                    sep = sep_names[ep.text]
                    rules_out.append(f"-A {chain}{comment(f'{name} -> {ep}')} -m recent --name {sep} --rcheck "
                                     f"--seconds {svc.sticky_seconds} --reap -j {sep}")
            n = len(eps)
            for i, ep in enumerate(eps):
                stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
                rules_out.append(f"-A {chain}{comment(f'{name} -> {ep}')}{stat} -j {sep_names[ep.text]}")

        for ep in reachable:
            sep = sep_names[ep.text]
            chains_out.append(sep)
            active.add(sep)
            head = f"-A {sep}{comment(name)}"
            rules_out.append(f"{head} -s {ep.ip} -j {KUBE_MARK_MASQ}")
            recent = f" -m recent --name {sep} --set" if svc.affinity_client_ip else ""
            rules_out.append(f"{head}{recent} -m {proto} -p {proto} -j DNAT --to-destination {ep}")

        if write:
            nat_chains.extend(f":{c} - [0:0]" for c in chains_out)
            nat_rules.extend(rules_out)
        else:
            skipped_rules += len(rules_out)

    deleted = sorted(c for c in set(existing_nat_chains) - active if names.is_iptables_service_chain(c))
    for c in deleted:
        nat_chains.append(f":{c} - [0:0]")
        nat_rules.append(f"-X {c}")

    last = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
    if match_all(cfg):
        dest = "-m addrtype --dst-type LOCAL"
        if is_v6:
            dest += " ! -d ::1/128"
        elif not localhost_np:
            dest += " ! -d 127.0.0.0/8"
        nat_rules.append(f"-A {KUBE_SERVICES} {last} {dest} -j {KUBE_NODEPORTS}")
    else:
        for ip in node_port_ips(cfg):
            if ip.is_loopback and (is_v6 or not localhost_np):
                continue
            nat_rules.append(f"-A {KUBE_SERVICES} {last} -d {ip} -j {KUBE_NODEPORTS}")

    if not cfg.conntrack_tcp_liberal:
        acct = f" -m nfacct --nfacct-name {NFACCT_INVALID}" if cfg.nfacct else ""
        filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{acct} -j DROP")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                        f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    payload = "\n".join(["*filter", *filter_chains, *filter_rules, "COMMIT",
                         "*nat", *nat_chains, *nat_rules, "COMMIT"]) + "\n"
    nat_total = sum(1 for r in nat_rules if r.startswith("-A ")) + skipped_rules
    return SyncResult(payload, active, deleted, full, nat_total)


@dataclass
class Proxier:
    """kube-proxy's iptables proxier between syncs: what it last synced and which
    service chains the kernel holds (what `iptables-save -t nat` would list)."""
    cfg: ProxierConfig = field(default_factory=ProxierConfig)
    need_full_sync: bool = True
    kernel_nat_chains: set[str] = field(default_factory=set)
    # what the last sync saw (kube-proxy's change trackers compare against it)
    _services: dict[tuple[str, str], Service] = field(default_factory=dict, init=False, repr=False)
    _slices: dict[tuple[str, str], tuple] = field(default_factory=dict, init=False, repr=False)

    def sync(self, services: Iterable[Service], slices: Iterable[EndpointSlice], *,
             restore_ok: bool = True) -> SyncResult:
        """Sync to SERVICES/SLICES and return what kube-proxy hands iptables-restore.
        RESTORE_OK=False: the restore failed (kube-proxy's changes are consumed all the
        same, the kernel is unchanged and the next sync is a full one)."""
        services = list(services)
        slices = list(slices)
        new_svcs = {(s.namespace, s.name): s for s in services}
        new_slices: dict[tuple[str, str], list] = {}
        for sl in slices:
            new_slices.setdefault((sl.namespace, sl.service), []).append(sl)
        new_sl = {k: tuple(sorted(v, key=repr)) for k, v in new_slices.items()}
        changed = {k for k in set(new_svcs) | set(self._services) if new_svcs.get(k) != self._services.get(k)}
        changed |= {k for k in set(new_sl) | set(self._slices) if new_sl.get(k) != self._slices.get(k)}
        self._services, self._slices = new_svcs, new_sl

        result = render(self.cfg, services, slices, changed=None if self.need_full_sync else changed,
                        existing_nat_chains=self.kernel_nat_chains)
        if not restore_ok:
            self.need_full_sync = True
            return result
        self.need_full_sync = False
        for line in result.payload.split("*nat\n", 1)[1].splitlines():
            if line.startswith(":"):
                self.kernel_nat_chains.add(line[1:].split()[0])
            elif line.startswith("-X "):
                self.kernel_nat_chains.discard(line[3:])
        return result


# --- upstream's comparison: sortIPTablesRules (proxier_test.go) -----------------------------

def _comment_service(rule: str) -> str | None:
    """orderByCommentServiceName's key: the comment up to the first space or colon."""
    marker = "--comment "
    i = rule.find(marker)
    if i < 0:
        return None
    rest = rule[i + len(marker):]
    value = rest[1:rest.index('"', 1)] if rest.startswith('"') else rest.split(" ", 1)[0]
    for j, ch in enumerate(value):
        if ch in " :":
            return value[:j]
    return value


def _stable_by_service(rules: list[str], keep_last: bool) -> list[str]:
    """sort.SliceStable with orderByCommentServiceName. A stable sort's result is unique
    for a consistent order; a rule without a comment compares as "not less" both ways
    (never the case in these chains), which an insertion sort keeps in place."""
    def less(a: str, b: str) -> bool:
        if keep_last:
            if "must be the last rule" in a:
                return False
            if "must be the last rule" in b:
                return True
        ka, kb = _comment_service(a), _comment_service(b)
        if ka is None or kb is None:
            return False
        return ka < kb

    out = list(rules)
    for i in range(1, len(out)):  # insertion sort
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out


def sort_restore(text: str) -> str:
    """sortIPTablesRules: tables by name; chains KUBE-NODEPORTS, KUBE-SERVICES, then other
    KUBE-* alphabetically, then non-KUBE-*; each chain's rules after its declaration block;
    KUBE-NODEPORTS/KUBE-SERVICES rules stably sorted by the service in their comment (the
    nat KUBE-SERVICES "must be the last rule" rule kept last); deleted chains (-X) last."""
    tables: dict[str, dict] = {}
    order: list[str] = []
    cur: dict | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = {"chains": [], "rules": {}, "deleted": []}
            tables[line[1:]] = cur
            order.append(line[1:])
        elif line == "COMMIT":
            cur = None
        elif cur is None:
            raise ValueError(f"line outside a table: {line!r}")
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name not in cur["chains"]:
                cur["chains"].append(name)
                cur["rules"][name] = []
        elif line.startswith("-A "):
            chain = line.split()[1]
            if chain not in cur["rules"]:
                raise ValueError(f"rule for undeclared chain: {line!r}")
            cur["rules"][chain].append(line)
        elif line.startswith("-X "):
            cur["deleted"].append(line[3:].strip())
        else:
            raise ValueError(f"unexpected line: {line!r}")

    def chain_key(name: str) -> tuple[int, str]:
        if name == KUBE_NODEPORTS:
            return (0, "")
        if name == KUBE_SERVICES:
            return (1, "")
        return (2, name) if name.startswith("KUBE-") else (3, name)

    out: list[str] = []
    for tname in sorted(order):
        t = tables[tname]
        chains = sorted(t["chains"], key=chain_key)
        out.append(f"*{tname}")
        out.extend(f":{c} - [0:0]" for c in chains)
        for c in chains:
            rules = t["rules"][c]
            if c in (KUBE_NODEPORTS, KUBE_SERVICES):
                rules = _stable_by_service(rules, keep_last=(c == KUBE_SERVICES and tname == "nat"))
            out.extend(rules)
        out.extend(f"-X {c}" for c in sorted(t["deleted"], key=chain_key))
        out.append("COMMIT")
    return "\n".join(out) + "\n"
