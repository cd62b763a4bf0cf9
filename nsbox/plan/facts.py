"""What a lab's picture must teach, read from the model alone (no kernel):
where source NAT happens, which ports are forwarded where (DNAT rules and
docker-proxy), which containers share a netns, which nodes have no way out,
VXLAN tunnels and their underlay, virtual addresses (Services, published ports).

`nsbox show` draws these in every format, and tests/unit/test_unit_show_facts.py
checks every recipe's picture against them, so a label is never a guess.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nsbox.model import Lab, Node
from nsbox.model.firewall import Table
from nsbox.model.rules import Rule


@dataclass(frozen=True)
class NatPoint:
    """A MASQUERADE/SNAT rule that rewrites a source towards another network."""

    node: str
    target: str             # "MASQUERADE" or "SNAT --to-source ..." (the -j part of the rule)
    src: str | None         # "from CIDR" or "not from CIDR" (`-s`), None: any source
    out: str | None         # the interface the packets leave by (the default route's), if known
    mark: str | None = None  # only packets with this mark (`-m mark --mark`), as kube-proxy's

    @property
    def label(self) -> str:
        src = f" {self.src}" if self.src else ""
        mark = f" marked {self.mark}" if self.mark else ""
        return f"{self.target}{src}{mark}" + (f" out {self.out}" if self.out else "")


@dataclass(frozen=True)
class Forward:
    """A port forward: packets for ENTRY (address or node, port) are sent to a target."""

    node: str               # whose rules (or proxy) do it
    how: str                # "DNAT" or the proxy's name ("docker-proxy")
    proto: str | None
    entry: str              # e.g. "host:8080" or "10.96.0.10:80"
    to_ip: str
    to_port: str | None
    to_node: str | None     # the node that owns TO_IP, if any

    @property
    def label(self) -> str:
        dest = f"{self.to_node or self.to_ip}" + (f":{self.to_port}" if self.to_port else "")
        proto = f"/{self.proto}" if self.proto else ""
        return f"{self.entry}{proto} -> {dest} ({self.how})"


@dataclass(frozen=True)
class Shared:
    """A container that runs in another node's netns (container mode, a pod, host mode)."""

    container: str
    node: str


@dataclass(frozen=True)
class Tunnel:
    node: str
    iface: str
    vni: str | None
    underlay: str | None    # the device the encapsulated packets leave by
    local: str | None

    @property
    def label(self) -> str:
        bits = [f"vxlan {self.vni}" if self.vni is not None else "vxlan"]
        if self.underlay:
            bits.append(f"over {self.underlay}")
        if self.local:
            bits.append(f"from {self.local}")
        return " ".join(bits)


@dataclass(frozen=True)
class Facts:
    nat: list[NatPoint]
    forwards: list[Forward]
    shared: list[Shared]
    no_way_out: list[str]   # nodes with a global address, no default route, and no one's gateway
    tunnels: list[Tunnel]
    virtuals: list[str]     # labels of the lab's virtual addresses

    def nat_nodes(self) -> set[str]:
        return {p.node for p in self.nat}


def facts(lab: Lab) -> Facts:
    return Facts(nat=[p for n in lab.nodes.values() for p in nat_points(n)],
                 forwards=forwards(lab), shared=[Shared(c.name, c.node) for c in lab.containers.values()],
                 no_way_out=no_way_out(lab), tunnels=tunnels(lab),
                 virtuals=[_virtual_label(v) for v in lab.virtuals])


def _virtual_label(v) -> str:
    where = f"{v.ip}:{v.port}/{v.proto}" if v.port else v.ip
    return f"{v.name}: {where}" if v.name else f"virtual {where}"


def _nat_target(rule: str) -> str:
    return rule.split(" -j ", 1)[-1] if " -j " in rule else rule


def _loopback(value: str | None) -> bool:
    if not value:
        return False
    try:
        return ipaddress.ip_network(value, strict=False).is_loopback
    except ValueError:
        return False


def nat_points(node: Node) -> list[NatPoint]:
    """Source NAT towards another network: MASQUERADE and SNAT rules, leaving out the
    ones that only rewrite loopback sources (Docker's embedded DNS replies)."""
    nat = node.firewall.tables.get("nat")
    if nat is None:
        return []
    out = default_dev(node)
    points: list[NatPoint] = []
    for chain in nat.chains.values():
        for rule in chain.rules:
            if rule.jumps_to not in ("MASQUERADE", "SNAT"):
                continue
            if rule.src is not None and not rule.src.invert and _loopback(rule.src.value):
                continue
            leaves = out if out and _may_leave_by(rule, out) else None
            src = rule.src.render("from").replace("! from", "not from") if rule.src else None
            point = NatPoint(node.name, _nat_target(rule.render()), src, leaves, _opt(rule, "mark"))
            if point not in points:
                points.append(point)
    return points


def _may_leave_by(rule: Rule, dev: str) -> bool:
    o = rule.out_iface
    if o is None:
        return True
    return (o.value == dev) != o.invert


def default_dev(node: Node) -> str | None:
    """The interface of NODE's IPv4 default route (its dev, or the one whose subnet holds the gateway)."""
    for r in node.routes:
        if r.dst != "default" or r.delete or r.table not in (None, "main"):
            continue
        if r.dev:
            return r.dev
        if r.via:
            try:
                gw = ipaddress.ip_address(r.via)
            except ValueError:
                continue
            for a in node.addresses:
                try:
                    if gw in a.network:
                        return a.iface
                except (ValueError, TypeError):
                    continue
    return None


def owner_of(lab: Lab, ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for node in lab.nodes.values():
        for a in node.addresses:
            try:
                if ipaddress.ip_address(a.ip) == addr:
                    return node.name
            except ValueError:
                continue
    return None


def _opt(rule: Rule, *names: str) -> str | None:
    for m in rule.matches:
        for o in m.options:
            if o.name in names and not o.invert:
                return o.value
    return None


def _paths(table: Table, chain: str, seen: frozenset[str] = frozenset()) -> list[list[Rule]]:
    """Each way into CHAIN from a builtin chain: the jump rules, nearest first. A Service's
    endpoint chain is reached from its ClusterIP rule and from its NodePort rule: two
    entries, two forwards."""
    found: list[list[Rule]] = []
    for c in table.chains.values():
        if c.name in seen or c.name == chain:
            continue
        for r in c.rules:
            if r.jumps_to != chain:
                continue
            above = [] if c.builtin else _paths(table, c.name, seen | {chain})
            found += [[r, *p] for p in above] if above else [[r]]
    return found


def forwards(lab: Lab) -> list[Forward]:
    out: list[Forward] = []
    for node in lab.nodes.values():
        nat = node.firewall.tables.get("nat")
        for chain in (nat.chains.values() if nat else ()):
            for rule in chain.rules:
                if rule.jumps_to != "DNAT" or rule.target is None:
                    continue
                to = next((o.value for o in rule.target.options if o.name == "to-destination"), None)
                if not to:
                    continue
                ip, _, port = to.rpartition(":") if to.count(":") == 1 else (to, "", "")
                ip = ip.strip("[]")
                for entry_path in (_paths(nat, chain.name) if not chain.builtin else []) or [[]]:
                    path = [rule, *entry_path]
                    dport = next((p for r in path if (p := _opt(r, "dport", "dports"))), None)
                    dst = next((r.dst.value for r in path if r.dst is not None and not r.dst.invert), None)
                    proto = next((r.proto.value for r in path if r.proto is not None and not r.proto.invert), None)
                    where = dst.removesuffix("/32") if dst else node.name
                    entry = f"{where}:{dport}" if dport else where
                    f = Forward(node.name, "DNAT", proto, entry, ip, port or None, owner_of(lab, ip))
                    if f not in out:
                        out.append(f)
        for p in node.proxies:
            where = node.name if p.host_ip in ("0.0.0.0", "::") else p.host_ip
            f = Forward(node.name, p.name, p.proto, f"{where}:{p.host_port}", p.container_ip,
                        str(p.container_port), owner_of(lab, p.container_ip))
            if f not in out:
                out.append(f)
    return out


def no_way_out(lab: Lab) -> list[str]:
    gateways = set()
    for node in lab.nodes.values():
        for r in node.routes:
            if r.dst == "default" and r.via:
                gateways.add(owner_of(lab, r.via))
    found = []
    for node in lab.nodes.values():
        has_global = any(not _loopback(a.cidr) and not a.cidr.lower().startswith("fe80") for a in node.addresses)
        has_default = any(r.dst == "default" and not r.delete for r in node.routes)
        if has_global and not has_default and node.name not in gateways and node.name != "host":
            found.append(node.name)
    return found


def tunnels(lab: Lab) -> list[Tunnel]:
    out = []
    for k in lab.links:
        if k.kind != "vxlan":
            continue
        opts = dict(k.options)
        vni = opts.get("vni", opts.get("id"))
        out.append(Tunnel(k.node, k.name, None if vni is None else str(vni),
                          opts.get("dev"), opts.get("local")))
    return out
