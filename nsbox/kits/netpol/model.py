"""The objects a NetworkPolicy speaks about, as plain data: namespaces and pods with labels
and named container ports, and NetworkPolicies parsed from their API form (networking/v1).

Parsing applies the API server's defaulting (staging/src/k8s.io/api/networking/v1/types.go):
a port's protocol defaults to TCP; policyTypes, when absent, is ["Ingress"] plus "Egress"
when the spec has egress rules. Anything the API would reject (unknown keys, a peer with
ipBlock and a selector, endPort without a numeric port, a bad CIDR) is a ValidationError.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from nsbox.errors import ValidationError

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry: key In/NotIn/Exists/DoesNotExist values."""
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":  # a missing key is "not in" (apimachinery labels.Selector)
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True)
class Selector:
    """A metav1.LabelSelector: matchLabels AND every matchExpressions entry; empty = everything."""
    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        return (all(labels.get(k) == v for k, v in self.match_labels)
                and all(r.matches(labels) for r in self.expressions))

    @classmethod
    def parse(cls, d: Any, where: str) -> Selector:
        if d is None:
            d = {}
        if not isinstance(d, dict) or set(d) - {"matchLabels", "matchExpressions"}:
            raise ValidationError(f"{where}: a label selector has matchLabels and matchExpressions only")
        ml = d.get("matchLabels") or {}
        if not isinstance(ml, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ml.items()):
            raise ValidationError(f"{where}: matchLabels maps strings to strings")
        reqs = []
        for e in d.get("matchExpressions") or []:
            op = e.get("operator") if isinstance(e, dict) else None
            if op not in ("In", "NotIn", "Exists", "DoesNotExist") or not isinstance(e.get("key"), str):
                raise ValidationError(f"{where}: bad matchExpressions entry {e!r}")
            values = tuple(e.get("values") or ())
            if (op in ("In", "NotIn")) != bool(values):
                raise ValidationError(f"{where}: operator {op} {'needs' if op in ('In', 'NotIn') else 'takes no'} values")
            reqs.append(Requirement(e["key"], op, values))
        return cls(tuple(sorted(ml.items())), tuple(reqs))


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    excepts: tuple[str, ...] = ()

    def contains(self, ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return (a in ipaddress.ip_network(self.cidr, strict=False)
                and not any(a in ipaddress.ip_network(e, strict=False) for e in self.excepts))


@dataclass(frozen=True)
class Peer:
    """One entry of from/to: ipBlock alone, or podSelector and/or namespaceSelector (None = absent)."""
    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None = every port of the protocol; str = a named port
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule: peers empty = every peer; ports empty = every port."""
    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the spec has no ingress key (kube-router tells the two apart)
    egress: tuple[Rule, ...] | None
    policy_types: tuple[str, ...]

    @property
    def ingress_rules(self) -> tuple[Rule, ...]:
        return self.ingress or ()

    @property
    def egress_rules(self) -> tuple[Rule, ...]:
        return self.egress or ()


@dataclass(frozen=True)
class ContainerPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Pod:
    namespace: str
    name: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str, protocol: str) -> int | None:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass
class Cluster:
    """Namespaces, pods and the policies in force."""
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)  # "ns/name" -> Pod
    policies: list[Policy] = field(default_factory=list)

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        # The API server sets kubernetes.io/metadata.name on every namespace.
        ns = Namespace(name, {**(labels or {}), "kubernetes.io/metadata.name": name})
        self.namespaces[name] = ns
        return ns

    def add_pod(self, pod: Pod) -> Pod:
        if pod.namespace not in self.namespaces:
            raise ValidationError(f"pod {pod.key}: no namespace {pod.namespace}")
        self.pods[pod.key] = pod
        return pod

    def apply(self, policy: Policy) -> None:
        """Create or replace (same namespace and name) a policy."""
        self.policies = [p for p in self.policies if (p.namespace, p.name) != (policy.namespace, policy.name)]
        self.policies.append(policy)


# ------------------------------------------------------------------ parsing the API form

def _int_or_name(v: Any, where: str) -> int | str:
    if isinstance(v, bool):
        raise ValidationError(f"{where}: port is a number or a name")
    if isinstance(v, int):
        if not 1 <= v <= 65535:
            raise ValidationError(f"{where}: port {v} is outside 1-65535")
        return v
    if isinstance(v, str) and v and len(v) <= 15 and v.replace("-", "").isalnum():
        return v
    raise ValidationError(f"{where}: bad port {v!r}")


def _port(d: Any, where: str) -> PolicyPort:
    if not isinstance(d, dict) or set(d) - {"protocol", "port", "endPort"}:
        raise ValidationError(f"{where}: a port has protocol, port and endPort only")
    proto = d.get("protocol") or "TCP"
    if proto not in PROTOCOLS:
        raise ValidationError(f"{where}: protocol is TCP, UDP or SCTP, not {proto!r}")
    port = _int_or_name(d["port"], where) if d.get("port") is not None else None
    end = d.get("endPort")
    if end is not None:
        if not isinstance(port, int) or not isinstance(end, int) or end < port or end > 65535:
            raise ValidationError(f"{where}: endPort needs a numeric port and port <= endPort <= 65535")
    return PolicyPort(proto, port, end)


def _cidr(s: Any, where: str) -> str:
    try:
        ipaddress.ip_network(s, strict=False)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: bad CIDR {s!r}") from None
    return s


def _peer(d: Any, where: str) -> Peer:
    if not isinstance(d, dict) or not d or set(d) - {"podSelector", "namespaceSelector", "ipBlock"}:
        raise ValidationError(f"{where}: a peer has podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in d:
        if len(d) > 1:
            raise ValidationError(f"{where}: ipBlock cannot be combined with a selector in one peer")
        b = d["ipBlock"]
        if not isinstance(b, dict) or "cidr" not in b or set(b) - {"cidr", "except"}:
            raise ValidationError(f"{where}: ipBlock has cidr and except")
        cidr = _cidr(b["cidr"], where)
        net = ipaddress.ip_network(cidr, strict=False)
        excepts = tuple(_cidr(e, where) for e in b.get("except") or ())
        for e in excepts:
            if not ipaddress.ip_network(e, strict=False).subnet_of(net):  # type: ignore[arg-type]
                raise ValidationError(f"{where}: except {e} is not inside {cidr}")
        return Peer(ip_block=IPBlock(cidr, excepts))
    return Peer(Selector.parse(d["podSelector"], where) if "podSelector" in d else None,
                Selector.parse(d["namespaceSelector"], where) if "namespaceSelector" in d else None)


def _rules(items: Any, key: str, where: str) -> tuple[Rule, ...] | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise ValidationError(f"{where}: {key} is a list")
    out = []
    for i, r in enumerate(items):
        w = f"{where} {key}[{i}]"
        peers_key = "from" if key == "ingress" else "to"
        if not isinstance(r, dict) or set(r) - {peers_key, "ports"}:
            raise ValidationError(f"{w}: a rule has {peers_key} and ports only")
        out.append(Rule(tuple(_peer(p, w) for p in r.get(peers_key) or ()),
                        tuple(_port(p, w) for p in r.get("ports") or ())))
    return tuple(out)


def parse_policy(obj: dict, namespace: str | None = None) -> Policy:
    """A Policy from a NetworkPolicy object (a dict as YAML/JSON gives it)."""
    if not isinstance(obj, dict):
        raise ValidationError("a NetworkPolicy is a mapping")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    ns = namespace or meta.get("namespace") or "default"
    where = f"NetworkPolicy {ns}/{name}"
    if not isinstance(name, str) or not name:
        raise ValidationError("a NetworkPolicy needs metadata.name")
    spec = obj.get("spec")
    if not isinstance(spec, dict) or set(spec) - {"podSelector", "ingress", "egress", "policyTypes"}:
        raise ValidationError(f"{where}: spec has podSelector, ingress, egress and policyTypes only")
    ingress = _rules(spec.get("ingress"), "ingress", where)
    egress = _rules(spec.get("egress"), "egress", where)
    types = spec.get("policyTypes")
    if types is None:  # API defaulting
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    if not isinstance(types, list) or not set(types) <= {"Ingress", "Egress"}:
        raise ValidationError(f"{where}: policyTypes lists Ingress and/or Egress")
    return Policy(ns, name, Selector.parse(spec.get("podSelector"), where), ingress, egress, tuple(types))
