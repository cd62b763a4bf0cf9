"""Kubernetes Services on the k8s kit, as kube-proxy writes them.

    web = k.service("web", [k8s.Port(80, 8080, name="http"), k8s.Port(53, proto="UDP", name="dns")],
                    selector={"app": "web"}, type="NodePort", external_traffic_policy="Local")
    lab.expect("p1", web, "http", 80, answered_by=web.endpoints)      # the ClusterIP
    lab.expect_spread("p1", web, 80, probes=30, at_least=3, max_share=0.6)

Every change (a node, a pod, a Service) is one kube-proxy sync on every node: the
Services and their EndpointSlices (derived from the pods the selector matches, or the
pods given, as the EndpointSlice controller derives them: one endpoint per ready pod with
its node name, one port per Service port named as it, the targetPort) go through
`nsbox.kits.kubeproxy`'s renderer with that node's ProxierConfig (its name, its address,
the cluster CIDR for detect-local, mark 0x4000, --random-fully), and the result replaces
what the previous sync installed:
- mode=iptables: the `iptables-restore` payload into the node's tables, and the jump rules
  kube-proxy inserts (`iptables -I CHAIN 1`) outside it, plus its KUBE-PROXY-CANARY chains;
- mode=nftables: the `ip kube-proxy` table (`nft -f` text) as the node's nftables ruleset.
Both modes: route_localnet=1 (kube-proxy sets it for NodePorts on 127.0.0.1).

The Service's addresses are declared virtual (`lab.virtual`): the ClusterIP (and
LoadBalancer / external IPs) as whole addresses, each NodePort as one port of every
node's address, so probes may target them and answered_by= proves where the DNAT went.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from nsbox.errors import ValidationError
from nsbox.kits.kubeproxy import iptables as kp_ipt
from nsbox.kits.kubeproxy import nftables as kp_nft
from nsbox.model import save
from nsbox.model.rules import parse_rule
from nsbox.kits.kubeproxy.model import (Endpoint, EndpointSlice, EndpointSlicePort, ProxierConfig, Service,
                                        ServicePort)

if TYPE_CHECKING:
    from nsbox.kits.k8s.cluster import Cluster, K8sNode

TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
POLICIES = ("Cluster", "Local")
AFFINITIES = ("None", "ClientIP")
CANARY_TABLES = ("mangle", "nat", "filter")  # kube-proxy's iptables monitor: KUBE-PROXY-CANARY
NODE_PORT_RANGE = (30000, 32767)


@dataclass(frozen=True)
class Port:
    """A ServicePort: PORT on the Service's addresses -> TARGET_PORT on the pods (default
    PORT); PROTO TCP or UDP; NODE_PORT 0 = allocated from 30000 (NodePort/LoadBalancer)."""
    port: int
    target_port: int | None = None
    proto: str = "TCP"
    name: str = ""
    node_port: int = 0

    @property
    def target(self) -> int:
        return self.target_port or self.port

    @property
    def l4(self) -> str:
        return self.proto.lower()


@dataclass
class ServiceHandle:
    """What `Cluster.service()` returns: the API object kube-proxy renders, the pods it
    selects and its addresses. A valid target of `lab.expect` (its ClusterIP)."""
    api: Service
    ports: tuple[Port, ...]
    pods: tuple[str, ...] = ()          # given explicitly
    selector: dict[str, str] | None = None
    endpoints: frozenset[str] = field(default_factory=frozenset)  # pod names, kept current by every sync
    external_name: str = ""  # type ExternalName: the name its DNS record is a CNAME to
    cluster_ip6: str = ""    # dual-stack: its IPv6 ClusterIP (spec.clusterIPs[1])

    @property
    def headless(self) -> bool:
        """clusterIP: None: no virtual address; its DNS name answers with the endpoints."""
        return self.api.cluster_ip == "None"

    @property
    def name(self) -> str:
        return self.api.name

    @property
    def namespace(self) -> str:
        return self.api.namespace

    @property
    def cluster_ip(self) -> str:
        return self.api.cluster_ip

    @property
    def probe_target(self) -> str:
        """The address `lab.expect(src, service, ...)` probes: the ClusterIP."""
        return self.api.cluster_ip

    @property
    def label(self) -> str:
        return f"service {self.name}"

    def port(self, port: int, proto: str = "TCP") -> Port:
        for p in self.ports:
            if p.port == port and p.proto == proto.upper():
                return p
        raise ValidationError(f"service {self.name} has no port {port}/{proto.lower()}")

    def node_port(self, port: int, proto: str = "TCP") -> int:
        return self.port(port, proto).node_port

    @property
    def lb_ip(self) -> str | None:
        return self.api.load_balancer_ingress[0] if self.api.load_balancer_ingress else None


def _ports(name: str, ports: Any) -> list[Port]:
    if isinstance(ports, (int, Port)):
        ports = [ports]
    out = []
    for p in ports or []:
        if type(p) is int:
            p = Port(p)
        if not isinstance(p, Port):
            raise ValidationError(f"service {name}: a port is an int or k8s.Port, not {p!r}")
        for what, v in (("port", p.port), ("targetPort", p.target)):
            if not (type(v) is int and 1 <= v <= 65535):
                raise ValidationError(f"service {name}: {what} {v!r} out of range 1-65535")
        if p.proto not in ("TCP", "UDP"):
            raise ValidationError(f"service {name}: protocol is TCP or UDP, not {p.proto!r}")
        out.append(p)
    if not out:
        raise ValidationError(f"service {name}: give at least one port")
    if len(out) > 1 and any(not p.name for p in out):
        raise ValidationError(f"service {name}: with several ports every port needs a name (as the API demands)")
    if len({p.name for p in out}) != len(out):
        raise ValidationError(f"service {name}: port names must be unique")
    if len({(p.port, p.proto) for p in out}) != len(out):
        raise ValidationError(f"service {name}: the same port and protocol twice")
    return out


def add_service(k: Cluster, name: str, ports: Any, *, selector: dict[str, str] | None = None,
                pods: Iterable[Any] | None = None, type: str = "ClusterIP", namespace: str = "default",
                cluster_ip: str | None = None, external_traffic_policy: str = "Cluster",
                internal_traffic_policy: str = "Cluster", session_affinity: str = "None",
                session_affinity_timeout: int = 10800, load_balancer_ip: str | None = None,
                load_balancer_source_ranges: Iterable[str] = (), external_ips: Iterable[str] = (),
                external_name: str | None = None) -> ServiceHandle:
    """See Cluster.service and the module's docstring."""
    where = f"service {name}"
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", str(name)):
        raise ValidationError(f"{where}: a Service name is a DNS label (a-z, 0-9, '-')")
    if any(s.name == name and s.namespace == namespace for s in k.services):
        raise ValidationError(f"{where}: declared twice")
    if type not in TYPES:
        raise ValidationError(f"{where}: type is one of {', '.join(TYPES)}, not {type!r}")
    for what, v, allowed in (("externalTrafficPolicy", external_traffic_policy, POLICIES),
                             ("internalTrafficPolicy", internal_traffic_policy, POLICIES),
                             ("sessionAffinity", session_affinity, AFFINITIES)):
        if v not in allowed:
            raise ValidationError(f"{where}: {what} is one of {', '.join(allowed)}, not {v!r}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", str(namespace)):
        raise ValidationError(f"{where}: a namespace is a DNS label (a-z, 0-9, '-'), not {namespace!r}")
    where = f"service {namespace}/{name}"
    if type == "ExternalName":
        return _external_name(k, name, namespace, ports, external_name, where)
    if external_name is not None:
        raise ValidationError(f"{where}: external_name needs type ExternalName")
    if (selector is None) == (pods is None):
        raise ValidationError(f"{where}: give selector= or pods= (one of them)")
    plist = list(ports) if isinstance(ports, (list, tuple)) else ports
    port_list = _ports(name, plist)
    headless = cluster_ip == "None"
    if headless and type != "ClusterIP":
        raise ValidationError(f"{where}: a headless Service (clusterIP None) is of type ClusterIP")
    pod_names: tuple[str, ...] = ()
    if pods is not None:
        pod_names = tuple(p if isinstance(p, str) else p.name for p in pods)
        for p in pod_names:
            if p not in k.labels:
                raise ValidationError(f"{where}: endpoint {p} is no pod of the cluster")
    if headless:
        pass
    elif cluster_ip is None:
        taken = {s.cluster_ip for s in k.services}
        if k.dns is not None:
            taken.add(k.dns.ip)  # the cluster DNS's address, even while it is being made
        while str(k.service_net.network_address + k._next_cluster_ip) in taken:
            k._next_cluster_ip += 1
        cluster_ip = str(k.service_net.network_address + k._next_cluster_ip)
        k._next_cluster_ip += 1
    else:
        try:
            ip = ipaddress.ip_address(cluster_ip)
        except ValueError:
            raise ValidationError(f"{where}: bad ClusterIP {cluster_ip!r}") from None
        if ip not in k.service_net:
            raise ValidationError(f"{where}: ClusterIP {cluster_ip} is outside {k.service_net}")
        if any(s.cluster_ip == cluster_ip for s in k.services):
            raise ValidationError(f"{where}: ClusterIP {cluster_ip} is taken")
    if type == "ClusterIP" and (load_balancer_ip or external_traffic_policy != "Cluster"):
        raise ValidationError(f"{where}: externalTrafficPolicy and a load balancer address need "
                              f"type NodePort or LoadBalancer")
    if load_balancer_ip is not None and type != "LoadBalancer":
        raise ValidationError(f"{where}: load_balancer_ip needs type LoadBalancer")
    if type != "ClusterIP":
        port_list = [p if p.node_port else Port(p.port, p.target_port, p.proto, p.name, k._allocate_node_port())
                     for p in port_list]
        for p in port_list:
            if not NODE_PORT_RANGE[0] <= p.node_port <= NODE_PORT_RANGE[1]:
                raise ValidationError(f"{where}: nodePort {p.node_port} outside {NODE_PORT_RANGE[0]}-"
                                      f"{NODE_PORT_RANGE[1]}")
    ranges = tuple(load_balancer_source_ranges)
    for r in ranges:
        try:
            ipaddress.ip_network(r)
        except ValueError:
            raise ValidationError(f"{where}: bad loadBalancerSourceRanges entry {r!r}") from None
    ext = tuple(external_ips)
    api = Service(
        namespace=namespace, name=name, cluster_ip=cluster_ip, type=type,
        ports=tuple(ServicePort(p.name, p.port, p.proto, p.node_port, p.target) for p in port_list),
        external_ips=ext, load_balancer_ingress=(load_balancer_ip,) if load_balancer_ip else (),
        load_balancer_source_ranges=ranges, external_traffic_policy=external_traffic_policy,
        internal_traffic_policy=internal_traffic_policy, session_affinity=session_affinity,
        session_affinity_timeout=session_affinity_timeout)
    svc = ServiceHandle(api, tuple(port_list), pod_names, dict(selector) if selector is not None else None)
    if k.dual_stack and not headless:
        from nsbox.kits.k8s import dualstack
        svc.cluster_ip6 = dualstack.allocate(k)
        k.lab.virtual(svc.cluster_ip6, name=f"service {namespace}/{name} (IPv6)")
    k.services.append(svc)
    if headless:  # nothing for kube-proxy; the cluster DNS answers its name with the pods
        sync_all(k)
        return svc
    label = f"service {namespace}/{name}"
    k.lab.virtual(cluster_ip, name=label)
    for a in (*ext, *([load_balancer_ip] if load_balancer_ip else [])):
        k.lab.virtual(a, name=f"{label} ({'load balancer' if a == load_balancer_ip else 'external IP'})")
    if type != "ClusterIP":
        for kn in k.nodes.values():
            for p in port_list:
                k.lab.virtual(kn.ip, proto=p.l4, port=p.node_port, name=f"{label} nodePort on {kn.name}")
    if namespace == "default":
        k.lab.target_names[name] = cluster_ip  # lab.expect(src, "web", ...) probes the ClusterIP
    sync_all(k)
    return svc


def _external_name(k: Cluster, name: str, namespace: str, ports: Any, target: str | None,
                   where: str) -> ServiceHandle:
    """type ExternalName: no ClusterIP, no endpoints, nothing for kube-proxy; the cluster
    DNS answers its name with a CNAME to TARGET (ports, if given, are only for SRV)."""
    from nsbox.model.dnszone import is_name

    if not target or not isinstance(target, str) or not is_name(target) or "." not in target.strip("."):
        raise ValidationError(f"{where}: type ExternalName needs external_name, a DNS name with a dot, "
                              f"not {target!r}")
    port_list = _ports(name, list(ports) if isinstance(ports, (list, tuple)) else ports) if ports else []
    api = Service(namespace=namespace, name=name, cluster_ip="", type="ExternalName",
                  ports=tuple(ServicePort(p.name, p.port, p.proto, 0, p.target) for p in port_list))
    svc = ServiceHandle(api, tuple(port_list), (), None, external_name=target.rstrip("."))
    k.services.append(svc)
    sync_all(k)
    return svc


def endpoint_pods(k: Cluster, svc: ServiceHandle) -> list[str]:
    """The pods behind SVC: those given, or the pods of its namespace whose labels the
    selector matches (an empty selector matches none here: kube-proxy would get no
    EndpointSlice either way)."""
    if svc.selector is None:
        return list(svc.pods)
    if not svc.selector:
        return []
    return [p for p, labels in k.labels.items() if k.namespace_of(p) == svc.namespace
            and all(labels.get(key) == v for key, v in svc.selector.items())]


def endpoint_slice(k: Cluster, svc: ServiceHandle) -> EndpointSlice:
    """The EndpointSlice controller's slice for SVC: one endpoint per pod (its address, its
    node, ready), one port per Service port with the targetPort."""
    eps = []
    for p in endpoint_pods(k, svc):
        kn, ip = k._pod_of[p]
        eps.append(Endpoint(addresses=(ip,), node_name=kn.name, ready=True, serving=True, terminating=False))
    ports = tuple(EndpointSlicePort(p.name, p.target, p.proto) for p in svc.ports)
    return EndpointSlice(svc.namespace, svc.name, tuple(eps), ports, name=f"{svc.name}-abcde")


def proxier_config(k: Cluster, kn: K8sNode) -> ProxierConfig:
    """kube-proxy's settings on node KN (a kubeadm/kind cluster's: detect-local by the cluster
    CIDR, masquerade bit 14, --random-fully where iptables has it; no nfacct counters)."""
    return ProxierConfig(
        node_name=kn.name, node_ip=kn.ip, family=4, cluster_cidr=k.cluster_cidr, masquerade_mark="0x4000",
        local_ips=(kn.ip, "127.0.0.1"), nfacct=False, random_fully=k.mode == "iptables",
        node_port_addresses=None if k.mode == "iptables" else "primary",
        service_cidrs=(str(k.service_net),))


def sync_all(k: Cluster) -> None:
    api = [s.api for s in k.services]
    slices = []
    for s in k.services:
        sl = endpoint_slice(k, s)
        s.endpoints = frozenset(endpoint_pods(k, s))
        slices.append(sl)
    for kn in k.nodes.values():
        sync_node(k, kn, api, slices)
    if k.dual_stack:  # kube-proxy's second proxier: the same Services, IPv6
        from nsbox.kits.k8s import dualstack
        api6 = [dualstack.api6(s) for s in k.services if s.cluster_ip6]
        slices6 = [dualstack.slice6(k, s, endpoint_pods(k, s)) for s in k.services if s.cluster_ip6]
        for kn in k.nodes.values():
            sync_node(k, kn, api6, slices6, family=6)
    if k.dns is not None:  # the cluster DNS watches Services and EndpointSlices too
        k.dns.refresh()


def sync_node(k: Cluster, kn: K8sNode, services: list[Service], slices: list[EndpointSlice],
              family: int = 4) -> None:
    """One full kube-proxy sync on KN, replacing what the previous sync left in the model.
    FAMILY 6: the dual-stack IPv6 proxier (ip6tables, or the `ip6 kube-proxy` table)."""
    n = kn.node
    key = kn.name if family == 4 else f"{kn.name}/6"
    if family == 4:
        n.sysctl("net.ipv4.conf.all.route_localnet", 1)
        cfg = proxier_config(k, kn)
    else:
        from nsbox.kits.k8s import dualstack
        cfg = dualstack.proxier_config6(k, kn)

    def table_of(name: str):
        return n.iptables(name) if family == 4 else n.ip6tables(name)

    if k.mode == "nftables":
        k.lab.require("nftables")
        text = kp_nft.render(cfg, services, slices).text()
        prev = k._kube_proxy.get(key)
        n.firewall.nftables(text, replaces=prev)  # the previous sync's table, in its place
        k._kube_proxy[key] = text
        return
    _uninstall_iptables(k, kn, family)
    result = kp_ipt.render(cfg, services, slices)
    installed: dict[str, set[str]] = {}
    for table in CANARY_TABLES:
        table_of(table).new_chain("KUBE-PROXY-CANARY")
        installed.setdefault(table, set()).add("KUBE-PROXY-CANARY")
    for table, lines in restore_tables(result.payload).items():
        t = table_of(table)
        for ln in save.lines(lines, table=table):
            if ln.kind == "chain":
                if ln.chain not in t.chains:
                    t.new_chain(ln.chain)
                    installed.setdefault(table, set()).add(ln.chain)
            elif ln.kind == "rule":
                t.append(ln.chain, as_saved(ln.spec, family))
    # kube-proxy's jump rules: each sync checks for it (`iptables -C`) and inserts it at
    # the top (`-I CHAIN 1`) only when absent, so one inserted at an earlier sync keeps its
    # place below what others inserted since (portmap's CNI-HOSTPORT-MASQ).
    for table, args in kp_ipt.jump_rules():
        t = table_of(table)
        chain, target = args[0], args[-1]
        if target not in t.chains:
            t.new_chain(target)
            installed.setdefault(table, set()).add(target)
        spec = " ".join(_quote(a) for a in args[1:])
        if parse_rule(spec).render() not in {r.render() for r in t.chains[chain].rules}:
            t.insert(chain, spec, 1)
    k._kube_proxy[key] = installed


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def _uninstall_iptables(k: Cluster, kn: K8sNode, family: int = 4) -> None:
    installed = k._kube_proxy.pop(kn.name if family == 4 else f"{kn.name}/6", None)
    if not installed:
        return
    # the chains go (the next render writes them again); the jump rules in the builtin
    # chains stay where they are, as in the kernel
    for table, chains in installed.items():
        t = kn.node.iptables(table) if family == 4 else kn.node.ip6tables(table)
        for c in chains:
            t.chains.pop(c, None)


def restore_tables(payload: str) -> dict[str, list[str]]:
    """An iptables-restore payload -> {table: its ':CHAIN' and '-A' lines} (a full sync
    has no -X lines: nothing stale to delete)."""
    out: dict[str, list[str]] = {}
    for ln in save.lines(payload):
        if ln.kind == "table":
            out.setdefault(ln.table, [])
        elif ln.kind in ("chain", "rule"):
            out[ln.table].append(ln.raw)
        elif ln.kind == "delete":
            raise AssertionError(f"a full sync deletes no chain: {ln.raw}")
    return out


def as_saved(spec: str, family: int = 4) -> str:
    """A rule as kube-proxy writes it -> as iptables-save prints it back (what the model
    restores and compares): `--probability P` as the kernel keeps it (lround(P * 2^31),
    printed %.11f), MARK's --or-mark / --xor-mark as --set-xmark, a bare `-j REJECT` with
    the default it prints (--reject-with icmp-port-unreachable: these are IPv4 tables)."""
    spec = re.sub(r"--probability (\S+)",
                  lambda m: f"--probability {round(float(m.group(1)) * 0x80000000) / 0x80000000:.11f}", spec)
    spec = re.sub(r"--or-mark (\S+)", lambda m: f"--set-xmark {m.group(1)}/{m.group(1)}", spec)
    spec = re.sub(r"--xor-mark (\S+)", lambda m: f"--set-xmark {m.group(1)}/0x0", spec)
    spec = re.sub(r"-j REJECT$", "-j REJECT --reject-with " + ("icmp-port-unreachable" if family == 4 else
                                                             "icmp6-port-unreachable"), spec.rstrip())
    return spec
