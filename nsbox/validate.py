"""Check a Lab model before the kernel is touched. Every error is one line."""

from __future__ import annotations

import ipaddress
import re

from nsbox.errors import ValidationError
from nsbox.model import Lab, Node, ReachCheck
from nsbox.model import linkopts
from nsbox.kinds import protocols
from nsbox.model.firewall import BUILTIN_CHAINS
from nsbox.model.names import control_char, ifname_problem
from nsbox.model.rules import BUILTIN_TARGETS
from nsbox.validate_routing import check_routing
from nsbox.model.lab import Target

_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_SYSCTL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:-]+( [A-Za-z0-9_.:-]+)*$")
_SYSCTL_RE = re.compile(r"^net\.(ipv4|ipv6|core|bridge|netfilter|unix)\.[A-Za-z0-9_./-]+$")


def validate(lab: Lab) -> None:
    """Raise ValidationError for the first problem found."""
    try:
        _validate(lab)
    except (TypeError, AttributeError, KeyError, RecursionError) as e:
        # a value of the wrong type (lab.node(123)) that no check above named: still one line
        raise ValidationError(f"malformed lab model: {type(e).__name__}: {' '.join(str(e).split())}") from None


def _validate(lab: Lab) -> None:
    from nsbox.recipe import check_name

    check_name(lab.name, "lab name: ")  # build() may have changed it: it names netns and journals
    for node in lab.nodes.values():
        _check_node(lab, node)
    _check_macvlan_parents(lab)
    _check_duplicate_addresses(lab)
    _check_virtuals(lab)
    _check_checks(lab)
    _check_texts(lab)  # last: the checks above say more precisely what is wrong


def _check_texts(lab: Lab) -> None:
    """The lab's name (it changes in build() too: it becomes netns and journal names), then
    every name and value of the model: no control characters (a newline ends a line of
    iptables-restore input, a report, a script). nft rulesets are multi-line text: they
    are checked by nft itself (nsbox.kernel.firewall.check_lab) and for include here."""
    from nsbox.model.serialize import lab_to_dict

    if not isinstance(lab.description, str):
        raise ValidationError(f"the lab's description is text, not {type(lab.description).__name__}")
    for where, text in _strings(lab_to_dict(lab), "lab"):
        bad = control_char(text)
        if bad is not None:
            raise ValidationError(f"{where}: {text!r} contains the control character {bad!r}")
    for node in lab.nodes.values():
        for ruleset in node.firewall.nft:
            check_nft_ruleset(ruleset, f"node {node.name}")


def _strings(value: object, where: str):
    """(where, text) for every string in a lab_to_dict tree, nft rulesets left out."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        name = value.get("name")
        here = f"{where} {name}" if isinstance(name, str) and not control_char(name) else where
        for key, v in value.items():
            if key != "nftables":
                yield from _strings(key, here)
                yield from _strings(v, f"{here} {key}" if key != "name" else here)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v, where)


# nft statements that read files: `include "FILE"` (nft -c opens it as root, outside any
# jail: a FIFO hangs validation, a device or /proc file is read). Ruleset text only.
_NFT_INCLUDE_RE = re.compile(r"(^|[;{}\n])\s*include\b", re.M)


def check_nft_ruleset(ruleset: str, where: str) -> None:
    if _NFT_INCLUDE_RE.search(ruleset):
        raise ValidationError(f"{where}: an nftables ruleset may not include files (`include`): "
                              f"write the rules into the recipe")
    bad = next((c for c in ruleset if c not in "\n\t" and control_char(c)), None)
    if bad is not None:
        raise ValidationError(f"{where}: an nftables ruleset holds the control character {bad!r}")


def check_ifname(name: str, where: str) -> None:
    problem = ifname_problem(name)
    if problem:
        raise ValidationError(f"{where}: {problem}")


def _check_resolver(node: Node) -> None:
    """A node's resolv.conf: at most 3 nameservers (glibc's MAXNS), IP addresses; search
    domains DNS names (at most 32); options `name` or `name:N`."""
    from nsbox.model.dnszone import is_name

    r, where = node.resolver, f"node {node.name}: resolver"
    if r is None:
        return
    ns, search, opts = (tuple(x) if isinstance(x, (list, tuple)) else None
                        for x in (r.nameservers, r.searches, r.options))
    if ns is None or search is None or opts is None or not 1 <= len(ns) <= 3 or len(search) > 32 or len(opts) > 16:
        raise ValidationError(f"{where}: 1-3 nameservers, at most 32 search domains and 16 options")
    for a in ns:
        try:
            ipaddress.ip_address(a)
        except (ValueError, TypeError):
            raise ValidationError(f"{where}: nameserver {a!r} is not an IP address") from None
    for d in search:
        if not isinstance(d, str) or not is_name(d):
            raise ValidationError(f"{where}: search domain {d!r} is not a DNS name")
    for o in opts:
        if not isinstance(o, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}(:[0-9]{1,4})?", o):
            raise ValidationError(f"{where}: option {o!r} is not NAME or NAME:N")


def _check_zones(node: Node) -> None:
    """A dns server's records are ones it can answer (nsbox/model/dnszone.py)."""
    from nsbox.model import dnszone

    for srv in node.servers:
        for rec in srv.records if srv.kind == "dns" else ():
            try:
                name, value = rec
                dnszone.check(name, value)
            except (dnszone.ZoneError, TypeError, ValueError) as e:
                raise ValidationError(f"node {node.name}: dns record {rec!r}: {e}") from None


def _check_node(lab: Lab, node: Node) -> None:
    if not _NODE_RE.match(node.name):
        raise ValidationError(f"bad node name {node.name!r} (letters, digits, '-', '_', '.'; at most 32)")
    _check_resolver(node)
    _check_zones(node)
    for iface in node.interfaces.values():
        check_ifname(iface.name, f"node {node.name}")
        if iface.master is not None:
            master = node.interfaces.get(iface.master)
            if master is None or master.kind != "bridge":
                raise ValidationError(f"node {node.name}: {iface.name} enslaved to {iface.master}, "
                                      f"which is not a bridge in that node")
        if iface.mtu is not None and not 68 <= iface.mtu <= 65535:
            raise ValidationError(f"node {node.name}: MTU {iface.mtu} of {iface.name} out of range 68-65535")
        linkopts.check(node.name, iface)
        if iface.vlan_filtering and "vlan_filtering" not in lab.requires:
            raise ValidationError(f"node {node.name}: bridge {iface.name} uses vlan_filtering; "
                                  f"declare it with lab.require(\"vlan_filtering\") (kernels without it SKIP)")
    for a in node.addresses:
        if a.iface not in node.interfaces:
            raise ValidationError(f"node {node.name}: address {a.cidr} on unknown interface {a.iface}")
    for key, value in node.sysctls.items():
        if not _SYSCTL_RE.match(key) or any(not part.strip("/") for part in key.split(".")):
            raise ValidationError(f"node {node.name}: sysctl {key!r} is not a per-namespace net.* key")
        if not _SYSCTL_VALUE_RE.match(value):
            raise ValidationError(f"node {node.name}: sysctl {key} value {value!r} is not a number, a word "
                                  f"or numbers separated by spaces")
    # Addresses, routes, rules, neighbour/FDB entries, per-interface sysctls: as the kernel judges them.
    check_routing(node)
    _check_ipsets(lab, node)
    _check_firewall(node)
    # (l4, port) -> [(bound address, None for the dual-stack wildcard), who]
    seen: dict[tuple[str, int], list[tuple[str | None, str]]] = {}
    for s in node.servers:
        if s.kind not in protocols.server_kinds():
            raise ValidationError(f"node {node.name}: unknown server kind {s.kind!r} "
                                  f"({', '.join(protocols.server_kinds())})")
        feature = protocols.feature_of(s.kind)
        if feature is not None and feature not in lab.requires:
            raise ValidationError(f"node {node.name}: serves {s.kind}; declare it with "
                                  f"lab.require(\"{feature}\") (kernels without it SKIP)")
        if not (type(s.port) is int and 1 <= s.port <= 65535):
            raise ValidationError(f"node {node.name}: server port {s.port} out of range 1-65535")
        if s.address is not None:
            try:
                ip = ipaddress.ip_address(s.address)
            except ValueError:
                raise ValidationError(f"node {node.name}: server address {s.address!r} is no address") from None
            # bind() of an address the netns does not have: EADDRNOTAVAIL (this kernel lets
            # it pass while lo is down, with no local routes at all: so do we)
            if not ip.is_loopback and all(a.ip != s.address for a in node.addresses) and node.interfaces["lo"].up:
                raise ValidationError(f"node {node.name}: a server binds {s.address}, which is no address of "
                                      f"this node (the kernel: EADDRNOTAVAIL)")
        l4 = s.l4
        taken = [who for ip, who in seen.get((l4, s.port), []) if _binds_clash(ip, s.address)]
        if taken:
            # one netns, one listener per address and port: the second bind() gets EADDRINUSE
            raise ValidationError(f"node {node.name}: two servers on {l4}/{s.port} in one netns "
                                  f"({', '.join(sorted({*taken, node.server_name(s)}))}; "
                                  f"the second bind gets EADDRINUSE)")
        seen.setdefault((l4, s.port), []).append((s.address, node.server_name(s)))
    for p in node.proxies:
        where = f"node {node.name}: {p.name} {p.proto} {p.host_ip}:{p.host_port}"
        if p.proto not in ("tcp", "udp"):
            raise ValidationError(f"{where}: proto is tcp or udp")
        for port in (p.host_port, p.container_port, *([p.dns_local] if p.dns_local is not None else [])):
            if not (type(port) is int and 1 <= port <= 65535):
                raise ValidationError(f"{where}: port {port!r} out of range 1-65535")
        if type(p.dns_servfail) is not bool or type(p.udp_reply_from_route) is not bool:
            raise ValidationError(f"{where}: dns_servfail and udp_reply_from_route are true or false")
        for ip in (p.host_ip, p.container_ip):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValidationError(f"{where}: {ip!r} is no address") from None
        key = (p.proto, p.host_port)
        taken = [who for ip, who in seen.get(key, []) if _binds_clash(ip, p.host_ip)]
        if taken:  # a wildcard bind collides with any other listener on the port
            raise ValidationError(f"{where}: the port is taken by {', '.join(sorted(set(taken)))} "
                                  f"(the kernel: EADDRINUSE)")
        seen.setdefault(key, []).append((p.host_ip, p.name))


def _binds_clash(a: str | None, b: str | None) -> bool:
    """Would bind()s of one port to A and to B collide in one netns (EADDRINUSE)? None is
    nsbox's dual-stack wildcard (`::` with IPV6_V6ONLY=0), which takes the port in both
    families; `::` itself is dual-stack too (net.ipv6.bindv6only=0, the default); an
    address of one family leaves the other family's addresses free
    (`-p 127.0.0.1:8080:80 -p [::1]:8080:80`, or two host addresses of one family)."""
    if a is None or b is None:
        return True
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if x.version == y.version:
        return x == y or x.is_unspecified or y.is_unspecified
    v6 = x if x.version == 6 else y
    return v6.is_unspecified


def _check_ipsets(lab: Lab, node: Node) -> None:
    """The node's sets again through the model's checks (a recipe may have edited them, a
    jail handed them over), declared with lab.require("ipset") (kernels or machines without
    ip_set or the ipset tool SKIP), and their families fitting the rules that match them."""
    from nsbox.model import ipsets

    where = f"node {node.name}"
    for key, s in node.ipsets.items():
        if not isinstance(s, ipsets.IPSet) or s.name != key:
            raise ValidationError(f"{where}: ipset {key!r} is not the set of that name")
        ipsets.make(s.name, s.type, s.entries, s.family, where)
    if node.ipsets and "ipset" not in lab.requires:
        raise ValidationError(f"{where} has ipsets: declare them with lab.require(\"ipset\") "
                              f"(machines without ip_set or the ipset tool SKIP)")


def _check_set_matches(node: Node, family: int, chain: str, rule) -> None:
    """Every `-m set --match-set NAME` names a set of this node, of the rule's family
    (iptables: "Set NAME doesn't exist" / "The protocol family of set NAME is inet6")."""
    from nsbox.model.ipsets import match_sets

    for name, flags in match_sets(rule.matches):
        s = node.ipsets.get(name)
        if s is None:
            raise ValidationError(f"node {node.name}: rule '-A {chain} {rule.render()}' matches ipset {name}, "
                                  f"which the node does not have (node.ipset({name!r}, TYPE, ENTRIES))")
        want = "inet" if family == 4 else "inet6"
        if s.family != want:
            raise ValidationError(f"node {node.name}: rule '-A {chain} {rule.render()}': ipset {name} is "
                                  f"family {s.family}, an IPv{family} rule needs {want}")
        dims = s.type.count(",") + 1
        words = flags.split(",") if flags else []
        if not words or any(w not in ("src", "dst") for w in words) or len(words) < dims:
            raise ValidationError(f"node {node.name}: rule '-A {chain} {rule.render()}': --match-set {name} "
                                  f"needs {dims} of src/dst, comma-separated (a {s.type} set)")


def _check_firewall(node: Node) -> None:
    for family, tables in ((4, node.firewall.tables), (6, node.firewall.tables6)):
        for table in tables.values():
            for chain in table.chains.values():
                for rule in chain.rules:
                    _check_set_matches(node, family, chain.name, rule)
    for table in [*node.firewall.tables.values(), *node.firewall.tables6.values()]:
        for chain in table.chains.values():
            for rule in chain.rules:
                target = rule.jumps_to
                if target is None:
                    continue
                if target in table.chains and target not in BUILTIN_CHAINS[table.name]:
                    continue
                if target not in BUILTIN_TARGETS:
                    raise ValidationError(f"node {node.name}: rule '-A {chain.name} {rule.spec}' jumps to "
                                          f"{target}, which is no chain of table {table.name}")
                if target in ("MASQUERADE", "SNAT", "DNAT") and table.name != "nat":
                    raise ValidationError(f"node {node.name}: {target} is only valid in the nat table")


def l2_segments(lab: Lab) -> dict[tuple[str, str], tuple[str, str]]:
    """(node, interface) -> a representative of its L2 segment: veth peers, bridge ports
    and their bridge, macvlan/ipvlan children and their parent share one (frames go
    between them); a vlan or vxlan is a segment of its own."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: tuple[str, str], b: tuple[str, str]) -> None:
        parent[find(a)] = find(b)

    for v in lab.veths:
        union((v.a_node, v.a_name), (v.b_node, v.b_name))
    for node in lab.nodes.values():
        for iface in node.interfaces.values():
            if iface.master is not None:
                union((node.name, iface.name), (node.name, iface.master))
    for link in lab.links:
        if link.parent is not None and link.kind in ("macvlan", "ipvlan"):
            union((link.node, link.name), tuple(link.parent))  # type: ignore[arg-type]
    return {key: find(key) for node in lab.nodes.values() for key in ((node.name, i) for i in node.interfaces)}


def _check_duplicate_addresses(lab: Lab) -> None:
    """One address on two nodes of one L2 segment: ARP/ND answers from either, so traffic to
    it goes to whichever answered first (the run then fails with "refused"). Refused unless
    every holder declares it shared (Node.address(..., shared=True))."""
    segments = l2_segments(lab)
    seen: dict[tuple[tuple[str, str], str], tuple[str, str, bool]] = {}
    for node in lab.nodes.values():
        for a in node.addresses:
            if a.iface == "lo":
                continue
            key = (segments.get((node.name, a.iface), (node.name, a.iface)), a.ip)
            other = seen.get(key)
            if other is not None and other[0] != node.name and not (other[2] and a.shared):
                raise ValidationError(f"address {a.ip} is on {other[0]}:{other[1]} and on {node.name}:{a.iface}, "
                                      f"one L2 segment: a duplicate address (an anycast/VIP address must be "
                                      f"declared shared=True on every holder)")
            seen.setdefault(key, (node.name, a.iface, a.shared))


def _check_macvlan_parents(lab: Lab) -> None:
    """A passthru macvlan takes its parent over: the kernel refuses any other macvlan on that
    parent (EINVAL), and a passthru child on a parent that already has one. (Other modes
    mix: each child has its own.)"""
    by_parent: dict[tuple[str, str], list] = {}
    for link in lab.links:
        if link.kind == "macvlan" and link.parent is not None:
            by_parent.setdefault(link.parent, []).append(link)
    for (pnode, pname), children in by_parent.items():
        modes = [dict(c.options).get("mode", "bridge") for c in children]
        if "passthru" in modes and len(children) > 1:
            names = ", ".join(f"{c.node}:{c.name} ({m})" for c, m in zip(children, modes))
            raise ValidationError(f"node {pnode}: {pname} has a passthru macvlan and other macvlans "
                                  f"({names}); passthru takes the parent over (the kernel: EINVAL)")


def _check_virtuals(lab: Lab) -> None:
    """A virtual address is one no interface owns; a virtual port one no server listens on."""
    for v in lab.virtuals:
        owners = [n for n in lab.nodes.values() if any(a.ip == v.ip for a in n.addresses)]
        where = f"virtual {v.ip}" + (f":{v.port}/{v.proto}" if v.port else "")
        if v.port is None and owners:
            raise ValidationError(f"{where}: the address is on an interface of {owners[0].name}, so the kernel "
                                  f"answers it; declare one port of it (proto=, port=) instead")
        if v.port is not None and not owners and not ipaddress.ip_address(v.ip).is_loopback:
            raise ValidationError(f"{where}: no node owns {v.ip}; declare the whole address (no proto/port)")
        if v.node is not None and owners and v.node not in {n.name for n in owners}:
            raise ValidationError(f"{where}: {v.ip} is no address of node {v.node}")
        if v.port is not None:
            for n in ([lab.nodes[v.node]] if v.node else owners):
                kinds = protocols.get(v.proto or "tcp").answers
                if any(s.port == v.port and s.kind in kinds for s in n.servers):
                    raise ValidationError(f"{where}: a server of {n.name} listens there, so it is not virtual")


def probe_target(lab: Lab, src: str, dst: str, proto: str, port: int | None,
                 family: int | None = None, query: str | None = None) -> Target:
    """Where a probe from SRC (a node or container) to DST goes, if LAB accepts it at all:
    a registered protocol (nsbox/kinds/protocols/: a check's, an ad-hoc probe's, an
    external verification's) with a port where it takes one, and a destination the lab owns
    (a node, a container, one of their addresses, a declared virtual address, SRC's
    loopback). Anything else raises ValidationError (the caller says which check or call)."""
    from nsbox.kinds import protocols

    if src not in lab.nodes and src not in lab.containers:
        raise ValidationError(f"unknown source node {src!r}")
    target = lab.target(src, dst, proto, port, family)
    if proto not in protocols.names():
        raise ValidationError(f"unknown protocol {proto!r} ({', '.join(protocols.names())})")
    p = protocols.get(proto)
    if p.plain == (query is not None):  # a plain probe has no query; dns asks for a name
        raise ValidationError(f"a {proto} check asks for a name (lab.expect_dns)" if not p.plain
                              else f"a {proto} probe takes no query")
    if not p.needs_port:
        if port is not None:
            raise ValidationError(f"{proto} takes no port")
    elif port is None or not 1 <= port <= 65535:
        raise ValidationError(f"{proto} needs a port 1-65535")
    return target


def _check_checks(lab: Lab) -> None:
    """Each check by its kind's own validation (nsbox/kinds/checks/), in the lab's order."""
    from nsbox.kinds.checks import kind_of

    reach = {c.name: c for c in lab.checks if isinstance(c, ReachCheck)}
    for m in lab.matrices:
        for src, dst, allow in m.cells:
            c = reach.get(m.cell_name(src, dst))
            if c is None or (c.src, c.dst, c.proto, c.port, c.allow) != (src, dst, m.proto, m.port, allow):
                raise ValidationError(f"matrix {m.name!r}: cell {src}->{dst} has no matching check")
    for c in lab.checks:
        kind_of(c).validate(lab, c, reach)
