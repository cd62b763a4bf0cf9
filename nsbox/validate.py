"""Check a Lab model before the kernel is touched. Every error is one line."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from nsbox.errors import ValidationError
from nsbox.model.spread import SpreadCheck
from nsbox.model.routes import NeighCheck, RouteCheck, validate_neigh_check, validate_route_check
from nsbox.model import BindCheck, ConntrackCheck, InterfacesCheck, Lab, LinkCheck, Node, ReachCheck
from nsbox.model import linkopts
from nsbox.model.lab import ANSWERS, SERVER_KINDS
from nsbox.model.firewall import BUILTIN_CHAINS
from nsbox.model.names import control_char, ifname_problem
from nsbox.model.rules import BUILTIN_TARGETS
from nsbox.validate_routing import check_routing

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


def _check_node(lab: Lab, node: Node) -> None:
    if not _NODE_RE.match(node.name):
        raise ValidationError(f"bad node name {node.name!r} (letters, digits, '-', '_', '.'; at most 32)")
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
    _check_firewall(node)
    # (l4, port) -> [(bound address, None for the dual-stack wildcard), who]
    seen: dict[tuple[str, int], list[tuple[str | None, str]]] = {}
    for s in node.servers:
        if s.kind not in SERVER_KINDS:
            raise ValidationError(f"node {node.name}: unknown server kind {s.kind!r} ({', '.join(SERVER_KINDS)})")
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


def _check_firewall(node: Node) -> None:
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


def _check_counted_by(lab: Lab, c: ReachCheck) -> None:
    """counted_by names a rule as dropped_by does, of any target: it must exist."""
    if c.dropped_by is not None:
        raise ValidationError(f"check {c.name!r}: dropped_by and counted_by together: name the rule once "
                              f"(dropped_by is a counted_by for a deny)")
    _check_rule_ref(lab, c, c.counted_by, "counted_by", drops=False)


def _check_dropped_by(lab: Lab, c: ReachCheck) -> None:
    if c.allow:
        raise ValidationError(f"check {c.name!r}: dropped_by needs a deny check (allow=False)")
    _check_rule_ref(lab, c, c.dropped_by, "dropped_by", drops=True)


def _check_rule_ref(lab: Lab, c: ReachCheck, ref: Any, what: str, drops: bool) -> None:
    from nsbox.model.rules import parse_rule

    if not isinstance(ref, tuple) or len(ref) != 4 or not all(isinstance(x, str) for x in ref):
        raise ValidationError(f"check {c.name!r}: {what} is (node, table, chain, rule spec or 'policy')")
    node, table, chain, spec = ref
    if table == "nft":
        _check_dropped_by_nft(lab, c, ref, what, drops)
        return
    # An IPv6 probe only meets ip6tables rules: the probe's family picks the tables.
    family = 6 if ":" in lab.target(c.src, c.dst, c.proto, c.port, c.family).ip else 4
    n = lab.nodes.get(node)
    t = n.firewall.family(family).get(table) if n else None
    ch = t.chains.get(chain) if t else None
    where = f"in node {node}" + (" (ip6tables: the probe is IPv6)" if family == 6 else "")
    if ch is None:
        raise ValidationError(f"check {c.name!r}: {what} names no chain {chain} of table {table} {where}")
    if spec == "policy":
        if not ch.builtin:
            raise ValidationError(f"check {c.name!r}: {table} {chain} {where} is no builtin chain: it has no policy")
        if drops and ch.policy != "DROP":
            raise ValidationError(f"check {c.name!r}: the policy of {table} {chain} {where} is not DROP")
        return
    rendered = parse_rule(spec).render()
    if not any(r.render() == rendered for r in ch.rules):
        raise ValidationError(f"check {c.name!r}: node {node} has no rule '-A {chain} {spec}' in table {table}"
                              + (" of ip6tables (the probe is IPv6)" if family == 6 else ""))


def _check_dropped_by_nft(lab: Lab, c: ReachCheck, ref: Any = None, what: str = "dropped_by",
                          drops: bool = True) -> None:
    """dropped_by=(node, "nft", "FAMILY TABLE CHAIN", rule text): the node's nftables rulesets
    must have that chain, and a drop rule in it whose text holds the given text (counted_by:
    any rule)."""
    node, _, chain, spec = ref or c.dropped_by
    words = chain.split()
    if len(words) != 3 or words[0] not in ("ip", "ip6", "inet", "bridge", "arp", "netdev"):
        raise ValidationError(f"check {c.name!r}: an nft {what} names its chain as 'FAMILY TABLE CHAIN' "
                              f"(e.g. 'ip docker-bridges raw-PREROUTING'), not {chain!r}")
    n = lab.nodes.get(node)
    text = "\n".join(n.firewall.nft) if n else ""
    family, table, name = words
    m = re.search(rf"^table {re.escape(family)} {re.escape(table)} \{{(.*?)^\}}", text, re.S | re.M)
    body = re.search(rf"^\s*chain {re.escape(name)} \{{(.*?)^\s*\}}", m.group(1), re.S | re.M) if m else None
    if body is None:
        raise ValidationError(f"check {c.name!r}: node {node} has no nftables chain {chain}")
    if not any(spec in ln and (not drops or re.search(r"\b(drop|reject)\b", ln))
               for ln in body.group(1).splitlines()):
        raise ValidationError(f"check {c.name!r}: no {'drop ' if drops else ''}rule in nftables chain {chain} "
                              f"of node {node} holds {spec!r}")


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


def _check_self_answer(lab: Lab, c: ReachCheck, target) -> None:
    """A probe to an address its own netns holds is answered by that netns, never by DST: the
    check would pass without a packet leaving the source. Only a check whose destination is
    the source itself may do that; a shared (anycast) address is left to the verifier."""
    src = lab.netns_of(c.src)
    if target.node is None or target.node.name == src.name or target.loopback:
        return
    mine = [a for a in src.addresses if a.ip == target.ip]
    if mine and not all(a.shared for a in mine):
        raise ValidationError(f"check {c.name!r}: {c.src} holds {target.ip} itself, so its own netns would "
                              f"answer the probe, not {target.label}")


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
                kinds = {"tcp": ("tcp", "http"), "udp": ("udp",)}[v.proto or "tcp"]
                if any(s.port == v.port and s.kind in kinds for s in n.servers):
                    raise ValidationError(f"{where}: a server of {n.name} listens there, so it is not virtual")


def _check_answered_by(lab: Lab, c: ReachCheck, dst_node, relayed: bool) -> None:
    """RELAYED: rules (a virtual address or port) or a proxy send the connection on, so the
    answer may come from another netns and another port."""
    if not c.allow or c.proto == "icmp":
        raise ValidationError(f"check {c.name!r}: answered_by needs an allowed tcp/udp/http check")
    kinds = set(ANSWERS[c.proto])
    for name in sorted(c.answered_by):
        try:
            netns = lab.netns_of(name)
        except ValidationError:
            raise ValidationError(f"check {c.name!r}: answered_by names {name!r}, no node or container") from None
        # the ports a DNAT may land on are the recipe's business; the container must serve the kind
        mine = [s for s in netns.servers if netns.server_name(s) == name and s.kind in kinds]
        if not relayed:
            mine = [s for s in mine if s.port == c.port]
            if dst_node is not None and netns.name != dst_node.name:
                raise ValidationError(f"check {c.name!r}: {name} is not in {dst_node.name}'s netns, and "
                                      f"{c.dst} is no virtual address, so it cannot answer")
        if not mine:
            raise ValidationError(f"check {c.name!r}: answered_by {name}, which serves no "
                                  f"{'/'.join(sorted(kinds))}" + ("" if relayed else f" on port {c.port}"))


def _check_checks(lab: Lab) -> None:
    reach = {c.name: c for c in lab.checks if isinstance(c, ReachCheck)}
    for m in lab.matrices:
        for src, dst, allow in m.cells:
            c = reach.get(m.cell_name(src, dst))
            if c is None or (c.src, c.dst, c.proto, c.port, c.allow) != (src, dst, m.proto, m.port, allow):
                raise ValidationError(f"matrix {m.name!r}: cell {src}->{dst} has no matching check")
    for c in lab.checks:
        if isinstance(c, ReachCheck):
            if c.src not in lab.nodes and c.src not in lab.containers:
                raise ValidationError(f"check {c.name!r}: unknown source node {c.src!r}")
            target = lab.target(c.src, c.dst, c.proto, c.port, c.family)
            _check_self_answer(lab, c, target)
            virtual = lab.virtual_for(target, c.proto, c.port)
            dst_node = target.node
            if c.proto not in ("icmp", "tcp", "udp", "http", "dns"):
                raise ValidationError(f"check {c.name!r}: unknown protocol {c.proto!r} (icmp, tcp, udp, http, dns)")
            if (c.proto == "dns") != (c.query is not None):
                raise ValidationError(f"check {c.name!r}: a dns check asks for a name (lab.expect_dns)")
            relayed = False
            if c.proto == "icmp":
                if c.port is not None:
                    raise ValidationError(f"check {c.name!r}: icmp takes no port")
            else:
                if c.port is None or not 1 <= c.port <= 65535:
                    raise ValidationError(f"check {c.name!r}: {c.proto} needs a port 1-65535")
                kinds = set(ANSWERS[c.proto])
                # Without a listener a 'deny' would be a refused port, not a blocked path. A
                # virtual address or port has none: rules send the packets on (answered_by says where).
                l4 = "udp" if c.proto in ("udp", "dns") else "tcp"
                relayed = virtual is not None or (dst_node is not None and any(
                    p.proto == l4 and p.host_port == c.port for p in dst_node.proxies))
                if not relayed and dst_node is not None and \
                        not any(s.port == c.port and s.kind in kinds for s in dst_node.servers):
                    raise ValidationError(f"check {c.name!r}: no {'/'.join(sorted(kinds))} server on "
                                          f"{target.label} port {c.port}" +
                                          (" (a published port or Service: declare it with lab.virtual)"
                                           if c.allow else ""))
            if c.answered_by is not None:
                _check_answered_by(lab, c, dst_node, relayed)
            if c.dropped_by is not None:
                _check_dropped_by(lab, c)
            if c.seen_from is not None:
                if c.proto == "icmp" or not c.allow:
                    raise ValidationError(f"check {c.name!r}: seen_from needs an allowed tcp/udp/http check")
                if not c.seen_froms or not all(isinstance(a, str) and a for a in c.seen_froms):
                    raise ValidationError(f"check {c.name!r}: seen_from is an address or a non-empty list of "
                                          f"addresses, not {c.seen_from!r}")
                for a in c.seen_froms:
                    lab.resolve(a)
            if c.counted_by is not None:
                _check_counted_by(lab, c)
            if c.size is not None or c.df:
                low = 48 if ":" in lab.target(c.src, c.dst, c.proto, c.port, c.family).ip else 28
                if c.proto != "icmp" or type(c.df) is not bool or (c.size is not None and not (
                        type(c.size) is int and low <= c.size <= 65535)):
                    raise ValidationError(f"check {c.name!r}: size= (bytes of the IP packet, {low}-65535) and "
                                          f"df=True|False are for icmp checks, not {c.proto} size={c.size!r}")
            if c.deny is not None:
                from nsbox.model.checks import DENY_KINDS
                if c.deny not in DENY_KINDS:
                    raise ValidationError(f"check {c.name!r}: deny must be one of {', '.join(DENY_KINDS)}, "
                                          f"not {c.deny!r}")
                if c.allow or c.proto == "dns":
                    raise ValidationError(f"check {c.name!r}: deny={c.deny!r} needs allow=False "
                                          f"(and an icmp/tcp/udp/http probe)")
        elif isinstance(c, LinkCheck):
            if c.node not in lab.nodes or c.iface not in lab.nodes[c.node].interfaces:
                raise ValidationError(f"check {c.name!r}: {c.iface} is no interface of node {c.node!r}")
            if c.state not in linkopts.OPERSTATES:
                raise ValidationError(f"check {c.name!r}: unknown link state {c.state!r} "
                                      f"({', '.join(linkopts.OPERSTATES)})")
        elif isinstance(c, RouteCheck):
            validate_route_check(lab, c)
        elif isinstance(c, NeighCheck):
            validate_neigh_check(lab, c)
        elif isinstance(c, SpreadCheck):
            missing = [p for p in c.probes if p not in reach]
            if missing:
                raise ValidationError(f"check {c.name!r}: its probe {missing[0]!r} is no reach check")
        elif isinstance(c, InterfacesCheck):
            lab.netns_of(c.node)
            for n in c.names:
                check_ifname(n, f"check {c.name!r}")
        elif isinstance(c, BindCheck):
            if c.proto not in ("tcp", "udp") or not (type(c.port) is int and 1 <= c.port <= 65535):
                raise ValidationError(f"check {c.name!r}: a port conflict is on tcp or udp, port 1-65535")
            me, holder = lab.netns_of(c.container), lab.netns_of(c.held_by)
            if me.name != holder.name:
                raise ValidationError(f"check {c.name!r}: {c.container} and {c.held_by} are in different "
                                      f"netns ({me.name}, {holder.name}); a port conflicts only within one")
            kinds = ("udp",) if c.proto == "udp" else ("tcp", "http")
            if not any(s.port == c.port and s.kind in kinds and holder.server_name(s) == c.held_by
                       for s in holder.servers):
                raise ValidationError(f"check {c.name!r}: {c.held_by} serves no {c.proto}/{c.port}")
        elif isinstance(c, ConntrackCheck):
            if c.node not in lab.nodes:
                raise ValidationError(f"check {c.name!r}: unknown node {c.node!r}")
            of = reach.get(c.of)
            if of is None or of.proto == "dns" or not of.allow:
                raise ValidationError(f"check {c.name!r}: {c.of!r} is not an allowed icmp/tcp/udp/http check")
            if of.proto == "icmp" and c.reply_sport is not None:
                raise ValidationError(f"check {c.name!r}: an ICMP entry has no ports: reply_sport does not apply")
            lab.resolve(c.reply_dst)
            if c.reply_src is not None:
                lab.resolve(c.reply_src)
            if c.reply_sport is not None and not (type(c.reply_sport) is int and 1 <= c.reply_sport <= 65535):
                raise ValidationError(f"check {c.name!r}: reply_sport {c.reply_sport!r} out of range 1-65535")
