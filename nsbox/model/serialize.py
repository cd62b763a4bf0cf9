"""A Lab as plain JSON data, and back.

The recipe jail (nsbox/sandbox/jail.py) builds a lab where recipe code cannot
reach the host and hands it over as JSON. The receiving side trusts nothing in
it: every field is rebuilt through the model's own constructors (rules are
parsed again from their iptables-save text), unknown keys are refused, and the
result is validated again before the kernel is touched.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nsbox.errors import RecipeError, ValidationError
from nsbox.model.firewall import BUILTIN_CHAINS, Firewall
from nsbox.model.matrix import Matrix
from nsbox.model.lab import (Address, Container, Fdb, Interface, Lab, Link, Machine, Neigh, Node, PolicyRule, Route,
                             Proxy, Resolver, Server, VethPair, Virtual)
from nsbox.model.rules import parse_rule

from nsbox.kinds.checks import KINDS as _CHECK_KINDS, kind_of  # each check kind's JSON form is its own


def lab_to_dict(lab: Lab) -> dict[str, Any]:
    return {
        "name": lab.name,
        "description": lab.description,
        "source": lab.source,
        "sets": dict(lab.sets),
        "requires": sorted(lab.requires),
        "nodes": [_node_to_dict(n) for n in lab.nodes.values()],
        "veths": [dataclasses.asdict(v) for v in lab.veths],
        "checks": [_check_to_dict(c) for c in lab.checks],
        "matrices": [dataclasses.asdict(m) for m in lab.matrices],
        "links": [dataclasses.asdict(link) for link in lab.links],
        "containers": [dataclasses.asdict(c) for c in lab.containers.values()],
        "machines": [dataclasses.asdict(m) for m in lab.machines],
        "virtuals": [dataclasses.asdict(v) for v in lab.virtuals],
        "sandboxes": list(lab.sandboxes),
    }


def _check_to_dict(c: Any) -> dict[str, Any]:
    try:
        kind = kind_of(c)
    except ValidationError:
        raise RecipeError(f"cannot hand over a check of type {type(c).__name__}") from None
    return {"type": kind.name, **kind.to_dict(c)}


def _node_to_dict(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "interfaces": [dataclasses.asdict(i) for i in node.interfaces.values()],
        "addresses": [dataclasses.asdict(a) for a in node.addresses],
        "routes": [dataclasses.asdict(r) for r in node.routes],
        "rules": [dataclasses.asdict(r) for r in node.rules],
        "neighs": [dataclasses.asdict(n) for n in node.neighs],
        "fdbs": [dataclasses.asdict(f) for f in node.fdbs],
        "sysctls": dict(node.sysctls),
        "optional_sysctls": sorted(node.optional_sysctls),
        "servers": [dataclasses.asdict(s) for s in node.servers],
        "proxies": [dataclasses.asdict(p) for p in node.proxies],
        "firewall": _tables_to_dict(node.firewall.tables),
        "firewall6": _tables_to_dict(node.firewall.tables6),
        "nftables": list(node.firewall.nft),
        "ipsets": [{"name": s.name, "type": s.type, "family": s.family, "entries": list(s.entries)}
                   for s in node.ipsets.values()],
        **({"resolver": dataclasses.asdict(node.resolver)} if node.resolver is not None else {}),
    }


def _tables_to_dict(tables: dict) -> dict[str, Any]:
    return {t.name: [{"name": c.name, "builtin": c.builtin, "policy": c.policy,
                      "rules": [r.render() for r in c.rules]} for c in t.chains.values()]
            for t in tables.values()}


def lab_from_dict(data: Any) -> Lab:
    """Rebuild a Lab from lab_to_dict's output. Raises RecipeError on anything malformed."""
    try:
        return _lab_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise RecipeError(f"malformed lab from the recipe loader: {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None


def _lab_from_dict(d: dict) -> Lab:
    _keys(d, "lab", {"name", "description", "source", "sets", "requires", "nodes", "veths", "checks", "matrices", "links",
                   "containers", "machines", "virtuals", "sandboxes"})
    lab = Lab(_str(d["name"]), _str(d["description"]))
    lab.source = _str(d.get("source", ""))
    lab.sets = {_str(k): _str(v) for k, v in d.get("sets", {}).items()}
    lab.nodes.clear()
    for nd in d["nodes"]:
        node = _node_from_dict(nd)
        if node.name in lab.nodes:
            raise ValidationError(f"node {node.name} defined twice")
        lab.nodes[node.name] = node
    lab.veths = [_make(VethPair, v) for v in d["veths"]]
    for c in d["checks"]:
        c = dict(c)
        kind = _CHECK_KINDS.get(c.pop("type", None))
        if kind is None:
            raise ValueError("unknown check type")
        lab.checks.append(kind.make(c, _make))
    lab.requires = {_str(f) for f in d["requires"]}
    lab.matrices = [_make(Matrix, m) for m in d.get("matrices", [])]
    for ld in d.get("links", []):
        link = _make(Link, ld)
        link.spec()  # the kind's own validation, again on this side
        iface = lab.nodes[link.node].interfaces.get(link.name)
        if iface is None or iface.kind != link.kind:
            raise ValueError(f"link {link.name} is no {link.kind} interface of node {link.node}")
        lab.links.append(link)
    # containers, machines and virtual addresses go through their builders: same checks as in the recipe
    for cd in d.get("containers", []):
        c = _make(Container, cd)
        lab.container(_str(c.name), _str(c.node))
    for md in d.get("machines", []):
        m = _make(Machine, md)
        lab.machine(_str(m.name), [_str(n) for n in m.nodes])
    for vd in d.get("virtuals", []):
        v = _make(Virtual, vd)
        lab.virtual(_str(v.ip), proto=v.proto, port=v.port, node=v.node, name=v.name)
    for name in d.get("sandboxes", []):
        lab.sandbox(_str(name))
    return lab


def _node_from_dict(d: dict) -> Node:
    _keys(d, "node", {"name", "interfaces", "addresses", "routes", "rules", "neighs", "fdbs", "sysctls", "optional_sysctls",
                      "servers", "proxies", "firewall", "firewall6", "nftables", "ipsets", "resolver"})
    node = Node(_str(d["name"]))
    node.interfaces = {}
    for i in d["interfaces"]:
        iface = _make(Interface, i)
        node.interfaces[iface.name] = iface
    node.addresses = [_make(Address, a) for a in d["addresses"]]
    node.routes = [_make(Route, r) for r in d["routes"]]
    node.rules = [_make(PolicyRule, r) for r in d.get("rules", [])]
    node.neighs = [_make(Neigh, n) for n in d.get("neighs", [])]
    node.fdbs = [_make(Fdb, f) for f in d.get("fdbs", [])]
    node.sysctls = {_str(k): _str(v) for k, v in d["sysctls"].items()}
    node.optional_sysctls = {_str(k) for k in d["optional_sysctls"]}
    node.servers = [_make(Server, s) for s in d["servers"]]
    node.proxies = [_make(Proxy, p) for p in d.get("proxies", [])]
    if d.get("resolver") is not None:
        node.resolver = _make(Resolver, d["resolver"])
    fw = Firewall()
    for family, key in ((4, "firewall"), (6, "firewall6")):
        _tables_from_dict(fw, family, d[key])
    for ruleset in d["nftables"]:
        fw.nftables(_str(ruleset))
    node.firewall = fw
    for sd in d.get("ipsets", []):
        _keys(sd, "ipset", {"name", "type", "family", "entries"})
        node.ipset(_str(sd["name"]), _str(sd["type"]), [_str(e) for e in sd["entries"]], family=_str(sd["family"]))
    return node


def _tables_from_dict(fw: Firewall, family: int, tables: dict) -> None:
    for tname, chains in tables.items():
        table = fw.table(_str(tname), family)  # refuses unknown tables
        for cd in chains:
            _keys(cd, "chain", {"name", "builtin", "policy", "rules"})
            name = _str(cd["name"])
            if name in BUILTIN_CHAINS[table.name]:
                chain = table.chains[name]
                if cd["policy"] is not None:
                    table.policy(name, _str(cd["policy"]))
            else:
                table.new_chain(name)  # checks the name
                chain = table.chains[name]
                if cd["builtin"] or cd["policy"] is not None:
                    raise ValueError(f"chain {name} of table {table.name} is no builtin chain")
            chain.rules = [parse_rule(_str(r), table.family) for r in cd["rules"]]


def _make(cls: type, d: dict) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    _keys(d, cls.__name__, names)
    return cls(**{k: _frozen(v) for k, v in d.items()})


def _frozen(v: Any) -> Any:
    """JSON has lists where the model has tuples (hashable, frozen dataclasses)."""
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, dict):
        raise TypeError("nested objects are not part of the model")
    return v


def _keys(d: Any, what: str, allowed: set[str]) -> None:
    if not isinstance(d, dict):
        raise TypeError(f"{what} is not an object")
    extra = set(d) - allowed
    if extra:
        raise ValueError(f"{what} has unknown fields {sorted(extra)}")


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v
