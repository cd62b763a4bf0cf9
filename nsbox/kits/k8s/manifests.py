"""Plain Kubernetes manifests in: `nsbox run ./app.yaml [--set nodes=N cni=... mode=...]`.

A file of Kubernetes objects (YAML documents, read with yaml.safe_load_all only; or JSON,
one object or a `List`) becomes a cluster on the k8s kit, and its checks are what the
objects promise:

- Namespace (labels), Pod (labels, containers[].ports), Deployment (replicas of its pod
  template: pods `<name>-<i>`; its selector must match the template's labels), Service
  (ClusterIP, headless, NodePort, LoadBalancer without an address, ExternalName; ports with
  targetPort a number or a container port's name; an EndpointSlice derived from the
  selector, as the EndpointSlice controller derives it), NetworkPolicy (the netpol kit's
  parser: podSelector, namespaceSelector, ipBlock/except, ports, named ports, endPort,
  policyTypes).
- Any other kind (ConfigMap, Ingress, StatefulSet ...) is named on stderr, one line each:
  nsbox does not model it, and it is not silently dropped.
- The cluster: NODES nodes (`--set nodes=`, default 2) with the CNI layout `cni=` and
  kube-proxy in `mode=`; pods placed round-robin over the nodes in file order; the cluster
  DNS (kube-dns 10.96.0.10, so pods resolve the Services' names in a live lab); every pod
  serves each of its container ports (TCP: http, UDP: udp echo) and, for the policy table,
  every port any pod declares (as the e2e's model pods do). NetworkPolicies are enforced by
  kube-router's rules (nsbox.kits.netpol.kuberouter, strict: the API's semantics) on every
  node, for that node's pods.
- Checks: every Service with a selector answers from every pod on every port, from one of
  its endpoints, unless the NetworkPolicy simulator says the policies deny that pod every
  endpoint (then: refused); a Service none of whose pods exist: refused (kube-proxy's
  REJECT). When policies exist, the policy truth table over all pods for every declared
  port, expected from the simulator.

TRUST: the file is untrusted input. It is read from the path the user gives (never found
in the current directory by itself), as a regular file of at most 1 MiB, parsed with
safe_load only (no Python tags), every object and field checked before anything is built:
a problem is one line naming the object, exit 2.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsbox.errors import UsageError, ValidationError

MAX_BYTES = 1 << 20
MAX_OBJECTS = 500
MAX_PODS = 60
MAX_REPLICAS = 20
EXTENSIONS = (".yaml", ".yml", ".json")
MODELLED = ("Namespace", "Pod", "Deployment", "Service", "NetworkPolicy")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")


def is_manifest(name: str) -> bool:
    """`nsbox run NAME`: a manifest file rather than a recipe (names have no '.')."""
    return name.lower().endswith(EXTENSIONS)


class ManifestError(ValidationError):
    """A manifest nsbox cannot take: one line, exit 2."""


@dataclass
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass
class PodSpec:
    namespace: str
    name: str
    labels: dict[str, str]
    ports: list[ContainerPort]
    owner: str = ""  # the Deployment that made it


@dataclass
class ServicePortSpec:
    port: int
    target: int | str
    protocol: str
    name: str
    node_port: int = 0


@dataclass
class ServiceSpec:
    namespace: str
    name: str
    type: str
    selector: dict[str, str] | None
    ports: list[ServicePortSpec]
    headless: bool = False
    external_name: str = ""


@dataclass
class Manifest:
    path: str
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    pods: list[PodSpec] = field(default_factory=list)
    services: list[ServiceSpec] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)  # (NetworkPolicy objects, their namespace)
    policy_ns: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # "Kind ns/name" nsbox does not model


# ------------------------------------------------------------------ reading

def read(path: str) -> list[Any]:
    """The objects of the file at PATH (as the user typed it): a regular file, at most
    MAX_BYTES, YAML (safe_load_all) or JSON; a `List` is unpacked."""
    if not isinstance(path, str) or not is_manifest(path) or "\0" in path:
        raise UsageError(f"a manifest is a .yaml, .yml or .json file, not {path!r}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"manifest {path!r}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"manifest {path!r} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise UsageError(f"manifest {path!r} is larger than {MAX_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {path}: not UTF-8 text") from None
    if path.lower().endswith(".json"):
        try:
            docs = [json.loads(text)]
        except (ValueError, RecursionError) as e:
            raise ManifestError(f"manifest {path}: not JSON: {' '.join(str(e).split())[:120]}") from None
    else:
        import yaml

        try:
            docs = list(yaml.safe_load_all(text))
        except (yaml.YAMLError, RecursionError) as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(e, "problem", None) or type(e).__name__
            raise ManifestError(f"manifest {path}: not YAML{where}: {' '.join(str(problem).split())[:120]}") from None
    out: list[Any] = []
    for d in docs:
        if d is None:
            continue  # an empty document (a trailing ---)
        if isinstance(d, dict) and d.get("kind") == "List":
            items = d.get("items")
            if not isinstance(items, list):
                raise ManifestError(f"manifest {path}: a List has items, a list")
            out += items
        else:
            out.append(d)
    if not out:
        raise ManifestError(f"manifest {path}: no objects")
    if len(out) > MAX_OBJECTS:
        raise ManifestError(f"manifest {path}: more than {MAX_OBJECTS} objects")
    return out


# ------------------------------------------------------------------ checking

def _str(v: Any, what: str, where: str, pattern: re.Pattern = _LABEL) -> str:
    if not isinstance(v, str) or not pattern.match(v):
        shown = repr(v)[:70]
        raise ManifestError(f"{where}: {what} {shown} is not a valid name")
    return v


def _labels(v: Any, where: str, what: str = "labels") -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > 64:
        raise ManifestError(f"{where}: {what} is a mapping of at most 64 labels")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not _LABEL_KEY.match(k) or not isinstance(val, str) or not _LABEL_VALUE.match(val):
            raise ManifestError(f"{where}: {what}: {str(k)[:60]!r}: {str(val)[:60]!r} is not a valid label")
        out[k] = val
    return out


def _int(v: Any, what: str, where: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise ManifestError(f"{where}: {what} is an integer {lo}-{hi}, not {repr(v)[:40]}")
    return v


def _proto(v: Any, where: str) -> str:
    v = "TCP" if v is None else v
    if v not in ("TCP", "UDP"):
        raise ManifestError(f"{where}: protocol {repr(v)[:30]} is not TCP or UDP (nsbox probes no SCTP)")
    return v


def _dict(v: Any, what: str, where: str, optional: bool = True) -> dict:
    if v is None and optional:
        return {}
    if not isinstance(v, dict):
        raise ManifestError(f"{where}: {what} is a mapping")
    return v


def _meta(obj: dict, kind: str, namespaced: bool = True) -> tuple[str, str, dict]:
    meta = _dict(obj.get("metadata"), "metadata", kind, optional=False)
    name = meta.get("name")
    where = f"{kind} {name!r}"[:80]
    _str(name, "metadata.name", where, _LABEL if kind in ("Namespace", "Service") else _SUBDOMAIN)
    ns = meta.get("namespace", "default") if namespaced else ""
    if namespaced:
        _str(ns, "metadata.namespace", f"{kind} {name}")
    return name, ns, meta


def _container_ports(spec: dict, where: str) -> list[ContainerPort]:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or len(containers) > 10:
        raise ManifestError(f"{where}: spec.containers is a list of 1-10 containers")
    out: list[ContainerPort] = []
    for c in containers:
        c = _dict(c, "a container", where, optional=False)
        ports = c.get("ports") or []
        if not isinstance(ports, list):
            raise ManifestError(f"{where}: a container's ports is a list")
        for p in ports:
            p = _dict(p, "a container port", where, optional=False)
            cp = ContainerPort(_int(p.get("containerPort"), "containerPort", where, 1, 65535),
                               _proto(p.get("protocol"), where), p.get("name") or "")
            if cp.name:
                _str(cp.name, "port name", where, _PORT_NAME)
            if any((o.port, o.protocol) == (cp.port, cp.protocol) for o in out):
                raise ManifestError(f"{where}: container port {cp.port}/{cp.protocol} twice")
            out.append(cp)
    for key in ("hostNetwork",):
        if spec.get(key):
            raise ManifestError(f"{where}: spec.{key} is not modelled by manifests here")
    return out


def _service(obj: dict, name: str, ns: str) -> ServiceSpec:
    where = f"Service {ns}/{name}"
    spec = _dict(obj.get("spec"), "spec", where, optional=False)
    typ = spec.get("type", "ClusterIP")
    if typ not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise ManifestError(f"{where}: type {repr(typ)[:30]} is not ClusterIP, NodePort, LoadBalancer or ExternalName")
    sel = spec.get("selector")
    selector = _labels(sel, where, "spec.selector") if sel is not None else None
    headless = spec.get("clusterIP") == "None"
    if spec.get("clusterIP") not in (None, "", "None"):
        raise ManifestError(f"{where}: a fixed spec.clusterIP is not taken (nsbox hands out the addresses)")
    for key in ("externalIPs", "loadBalancerIP", "sessionAffinity", "externalTrafficPolicy", "internalTrafficPolicy",
                "ipFamilies", "ipFamilyPolicy", "loadBalancerSourceRanges"):
        if key in spec:
            raise ManifestError(f"{where}: spec.{key} is not modelled by manifests here")
    ports_in = spec.get("ports") or []
    if not isinstance(ports_in, list) or len(ports_in) > 20:
        raise ManifestError(f"{where}: spec.ports is a list of at most 20 ports")
    ports = []
    for p in ports_in:
        p = _dict(p, "a port", where, optional=False)
        port = _int(p.get("port"), "port", where, 1, 65535)
        target = p.get("targetPort", port)
        if isinstance(target, str):
            _str(target, "targetPort", where, _PORT_NAME)
        else:
            target = _int(target, "targetPort", where, 1, 65535)
        pname = p.get("name") or ""
        if pname:
            _str(pname, "port name", where, _PORT_NAME)
        node_port = p.get("nodePort", 0)
        if node_port:
            _int(node_port, "nodePort", where, 30000, 32767)
        ports.append(ServicePortSpec(port, target, _proto(p.get("protocol"), where), pname, node_port))
    if typ == "ExternalName":
        ext = spec.get("externalName")
        if not isinstance(ext, str) or not _SUBDOMAIN.match(ext.rstrip(".").lower()) or "." not in ext.strip("."):
            raise ManifestError(f"{where}: spec.externalName is a DNS name with a dot")
        return ServiceSpec(ns, name, typ, None, ports, external_name=ext)
    if not ports:
        raise ManifestError(f"{where}: spec.ports is empty")
    if selector is None:
        raise ManifestError(f"{where}: a Service without a selector (its own EndpointSlices) is not modelled")
    return ServiceSpec(ns, name, typ, selector, ports, headless=headless)


def parse(path: str, objects: list[Any]) -> Manifest:
    """Check every object; the Manifest, or one ManifestError naming the first problem."""
    from nsbox.kits.netpol.model import parse_policy

    m = Manifest(path)
    m.namespaces["default"] = {}
    seen: set[tuple[str, str, str]] = set()
    declared_ns: set[str] = {"default"}
    for obj in objects:
        if not isinstance(obj, dict):
            raise ManifestError(f"manifest {path}: an object is a mapping, not {type(obj).__name__}")
        kind = obj.get("kind")
        if not isinstance(kind, str) or not re.fullmatch(r"[A-Z][A-Za-z0-9]{0,62}", kind):
            raise ManifestError(f"manifest {path}: an object has no valid kind ({repr(kind)[:40]})")
        if not isinstance(obj.get("apiVersion"), str):
            raise ManifestError(f"manifest {path}: {kind} has no apiVersion")
        if kind not in MODELLED:
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            name = meta.get("name")
            shown = name if isinstance(name, str) and _SUBDOMAIN.match(name) else "?"
            m.skipped.append(f"{kind} {shown}")
            continue
        name, ns, meta = _meta(obj, kind, namespaced=kind != "Namespace")
        key = (kind, ns, name)
        if key in seen:
            raise ManifestError(f"manifest {path}: {kind} {ns + '/' if ns else ''}{name} twice")
        seen.add(key)
        where = f"{kind} {ns + '/' if ns else ''}{name}"
        if kind == "Namespace":
            m.namespaces[name] = _labels(meta.get("labels"), where)
            declared_ns.add(name)
        elif kind == "Pod":
            spec = _dict(obj.get("spec"), "spec", where, optional=False)
            m.pods.append(PodSpec(ns, name, _labels(meta.get("labels"), where), _container_ports(spec, where)))
        elif kind == "Deployment":
            spec = _dict(obj.get("spec"), "spec", where, optional=False)
            replicas = _int(spec.get("replicas", 1), "spec.replicas", where, 0, MAX_REPLICAS)
            tmpl = _dict(spec.get("template"), "spec.template", where, optional=False)
            tmeta = _dict(tmpl.get("metadata"), "spec.template.metadata", where)
            labels = _labels(tmeta.get("labels"), where, "spec.template.metadata.labels")
            sel = _dict(spec.get("selector"), "spec.selector", where, optional=False)
            if set(sel) - {"matchLabels"}:
                raise ManifestError(f"{where}: spec.selector: only matchLabels is modelled")
            match = _labels(sel.get("matchLabels"), where, "spec.selector.matchLabels")
            if not match or any(labels.get(k) != v for k, v in match.items()):
                raise ManifestError(f"{where}: spec.selector does not match the template's labels")
            ports = _container_ports(_dict(tmpl.get("spec"), "spec.template.spec", where, optional=False), where)
            for i in range(replicas):
                m.pods.append(PodSpec(ns, f"{name}-{i}", dict(labels), list(ports), owner=name))
        elif kind == "Service":
            m.services.append(_service(obj, name, ns))
        elif kind == "NetworkPolicy":
            try:
                parse_policy(obj, ns)
            except ValidationError as e:
                raise ManifestError(f"manifest {path}: {' '.join(str(e).split())[:200]}") from None
            m.policies.append(obj)
            m.policy_ns.append(ns)
    used = {p.namespace for p in m.pods} | {s.namespace for s in m.services} | set(m.policy_ns)
    for ns in sorted(used - declared_ns):
        if ns == "kube-system":
            raise ManifestError(f"manifest {path}: kube-system is the cluster DNS's namespace here")
        raise ManifestError(f"manifest {path}: namespace {ns} is used but no Namespace object declares it")
    names = [p.name for p in m.pods]
    if len(names) > MAX_PODS:
        raise ManifestError(f"manifest {path}: more than {MAX_PODS} pods")
    keys = [(p.namespace, p.name) for p in m.pods]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ManifestError(f"manifest {path}: pod {dup[0]}/{dup[1]} twice (a Pod and a Deployment's replica?)")
    for p in m.pods:
        if len(lab_name(p)) > 32:
            raise ManifestError(f"manifest {path}: pod {p.namespace}/{p.name}: name too long for a node name")
    if not m.pods:
        raise ManifestError(f"manifest {path}: no pods (a Pod, or a Deployment with replicas)")
    return m


def lab_name(p: PodSpec) -> str:
    """The pod's node name in the lab: its name, `.ns` added outside the default namespace
    (node names are one namespace of names)."""
    return p.name if p.namespace == "default" else f"{p.name}.{p.namespace}"


def recipe_name(path: str) -> str:
    """The lab's name: the file's stem, checked as recipe names are."""
    from nsbox.recipe import check_name

    stem = Path(path).name.rsplit(".", 1)[0].lower()
    return check_name(stem, f"manifest {path}: ")


# ------------------------------------------------------------------ building

def resolve_target(svc: ServiceSpec, sp: ServicePortSpec, pods: list[PodSpec]) -> int:
    """A targetPort by name: the number of that container port on the selected pods (all
    must agree: the Service's one rule per port cannot send to several numbers here)."""
    if isinstance(sp.target, int):
        return sp.target
    found = {cp.port for p in pods for cp in p.ports if cp.name == sp.target and cp.protocol == sp.protocol}
    if len(found) != 1:
        raise ManifestError(f"Service {svc.namespace}/{svc.name}: targetPort {sp.target!r} names "
                            f"{'no container port' if not found else 'different numbers'} on its pods")
    return found.pop()


def build(lab: Any, m: Manifest, *, nodes: int, cni: str, mode: str) -> None:
    from nsbox.kits import k8s
    from nsbox.kits.netpol import model as np
    from nsbox.kits.netpol.kuberouter import render
    from nsbox.kits.netpol.simulator import allowed

    for s in m.skipped:
        print(f"nsbox: {m.path}: {s}: not modelled by nsbox, left out", file=sys.stderr)
    k = k8s.Cluster(lab, cni=cni, mode=mode)
    kns = [k.node(f"node{i + 1}", f"10.244.{i + 1}.0/24") for i in range(nodes)]
    dns = k.cluster_dns(kns[0])
    # every port any pod declares: each pod serves them all, so the policy table's deny is
    # the policy's, not a port nobody listens on (the e2e's model pods do the same)
    all_ports = sorted({(cp.port, cp.protocol) for p in m.pods for cp in p.ports})
    selected = {s.name + "/" + s.namespace: [p for p in m.pods if p.namespace == s.namespace and s.selector
                                             and all(p.labels.get(a) == b for a, b in s.selector.items())]
                for s in m.services}
    targets = {}
    for s in m.services:
        for sp in s.ports if s.type != "ExternalName" else ():
            targets[(s.namespace, s.name, sp.port, sp.protocol)] = resolve_target(s, sp, selected[s.name + "/" + s.namespace])
    served: dict[str, set[tuple[int, str]]] = {}
    for i, p in enumerate(m.pods):
        name = lab_name(p)
        node = k.pod(kns[i % nodes], name, labels=p.labels, namespace=p.namespace)
        want = set(all_ports)
        for s in m.services:
            if p in selected[s.name + "/" + s.namespace]:
                want |= {(targets[(s.namespace, s.name, sp.port, sp.protocol)], sp.protocol) for sp in s.ports}
        for port, proto in sorted(want):
            node.serve("http" if proto == "TCP" else "udp", port)
        served[name] = want
    handles = {}
    for s in m.services:
        if s.type == "ExternalName":
            k.service(s.name, [], type="ExternalName", external_name=s.external_name.rstrip("."), namespace=s.namespace)
            continue
        ports = [k8s.Port(sp.port, targets[(s.namespace, s.name, sp.port, sp.protocol)], sp.protocol, sp.name,
                          sp.node_port) for sp in s.ports]
        handles[(s.namespace, s.name)] = k.service(s.name, ports, selector=s.selector, namespace=s.namespace,
                                                   type=s.type, cluster_ip="None" if s.headless else None)

    # The policies: the simulator's model of the same pods, kube-router's rules on every node.
    cluster = np.Cluster()
    for ns, labels in m.namespaces.items():
        cluster.add_namespace(ns, labels)
    for p in m.pods:
        cluster.add_pod(np.Pod(p.namespace, p.name, k.pod_ip(lab_name(p)), dict(p.labels),
                               tuple(np.ContainerPort(cp.name, cp.port, cp.protocol) for cp in p.ports)))
    for obj, ns in zip(m.policies, m.policy_ns):
        cluster.apply(np.parse_policy(obj, ns))
    if m.policies:
        lab.require("ipset")
        for kn in kns:
            local = [f"{p.namespace}/{p.name}" for p in m.pods if lab_name(p) in {n.name for n in kn.pods}]
            _install_kube_router(kn.node, render(cluster, version="1", local_pods=local, strict=True))

    def ok(src: PodSpec, dst: PodSpec, port: int, proto: str) -> bool:
        return allowed(cluster, f"{src.namespace}/{src.name}", f"{dst.namespace}/{dst.name}", port, proto)

    # Every Service, from every pod, on every port.
    for s in m.services:
        h = handles.get((s.namespace, s.name))
        if h is None:
            continue
        eps = selected[s.name + "/" + s.namespace]
        for src in m.pods:
            for sp in s.ports:
                tp = targets[(s.namespace, s.name, sp.port, sp.protocol)]
                l4 = "tcp" if sp.protocol == "TCP" else "udp"
                label = f"{l4} {lab_name(src)} -> service {s.namespace}/{s.name}:{sp.port}"
                if s.headless:
                    continue  # no virtual address: its name answers with the pods (the DNS checks)
                verdicts: set[bool | None] = {ok(src, e, tp, sp.protocol) for e in eps if e is not src}
                if any(e is src for e in eps):
                    # kube-proxy may send it to itself: hairpinned and masqueraded to the node,
                    # which policies see as the node, not the pod; certain only without policies
                    verdicts.add(None if m.policies else True)
                if not eps:
                    lab.expect(lab_name(src), h, l4, sp.port, allow=False, name=f"{label} (no endpoints: REJECT)")
                elif verdicts == {True}:
                    lab.expect(lab_name(src), h, l4, sp.port, answered_by=[lab_name(e) for e in eps], name=label)
                elif verdicts == {False}:
                    lab.expect(lab_name(src), h, l4, sp.port, allow=False, name=f"{label} (denied by policy)")
                elif None in verdicts:
                    print(f"nsbox: {m.path}: {label}: may reach itself through the Service (hairpin, "
                          f"masqueraded to its node) where policies apply: not checked", file=sys.stderr)
                else:
                    # some endpoints admit it and some do not: kube-proxy's choice decides
                    print(f"nsbox: {m.path}: {label}: policies admit only some endpoints, not checked",
                          file=sys.stderr)
        if s.type in ("NodePort", "LoadBalancer") and eps and not m.policies:
            # its nodePort on every node's address, from a pod (where policies apply the
            # node-side masquerade makes the verdict the node's: checked only without them)
            src = m.pods[0]
            for kn in kns:
                for p in h.ports:
                    lab.expect(lab_name(src), kn.ip, p.l4 if p.l4 == "udp" else "tcp", p.node_port,
                               answered_by=[lab_name(e) for e in eps],
                               name=f"{p.l4} {lab_name(src)} -> {kn.name} {kn.ip}:{p.node_port} "
                                    f"(nodePort of {s.namespace}/{s.name})")
        dns.expect(lab_name(eps[0]) if eps else lab_name(m.pods[0]), f"{s.name}.{s.namespace}.svc.{dns.zone}",
                   h.cluster_ip if not s.headless else sorted(k.pod_ip(lab_name(e)) for e in eps) or None,
                   check_name=f"dns: {s.name}.{s.namespace}.svc")

    # The policy truth table over all pods, for every port declared.
    if m.policies and len(m.pods) > 1:
        names = [lab_name(p) for p in m.pods]
        by = {lab_name(p): p for p in m.pods}
        for port, proto in all_ports:
            expected = {(a, b): ok(by[a], by[b], port, proto) for a in names for b in names if a != b}
            lab.expect_matrix(names, "tcp" if proto == "TCP" else "udp", port, expected=expected,
                              name=f"policy {port}/{proto}")


def _install_kube_router(node: Any, rendered: Any) -> None:
    """One kube-router sync into the node's model (Rendered.install), its top-level jumps
    inserted at the top of INPUT, FORWARD and OUTPUT as kube-router inserts them."""
    node.sysctl("net.ipv4.icmp_ratelimit", 0)  # REJECTs at once, every probe (see network-policy)
    rendered.install(node, top_level_first=True)


def recipe_for(path: str) -> Any:
    """The Recipe `nsbox run PATH` runs: the file read and checked now (before any kernel
    work), built with the parameters nodes, cni, mode."""
    from nsbox.kits.k8s.cluster import LAYOUTS, PROXY_MODES
    from nsbox.recipe import Param, Recipe

    m = parse(path, read(path))
    name = recipe_name(path)

    def build_fn(lab: Any, nodes: int = 2, cni: str = "bridge", mode: str = "iptables") -> None:
        lab.description = f"the objects of {Path(path).name}: {len(m.pods)} pods, {len(m.services)} Services, " \
                          f"{len(m.policies)} NetworkPolicies"
        build(lab, m, nodes=nodes, cni=cni, mode=mode)

    params = (Param("nodes", 2, "how many nodes", min=1, max=8),
              Param("cni", "bridge", "the CNI layout", choices=LAYOUTS),
              Param("mode", "iptables", "kube-proxy's mode", choices=PROXY_MODES))
    return Recipe(name, f"Kubernetes objects of {Path(path).name}", build_fn, params, path=os.path.abspath(path))
