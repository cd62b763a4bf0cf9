"""`nsbox show`: the lab's topology as text, Mermaid or Graphviz dot.

Nodes (namespaces) with their interfaces and addresses, bridges with their
ports, veth pairs as edges between namespaces, routes, and what the lab is
about (nsbox/plan/facts.py): where source NAT happens (on which uplink), port
forwards (host:8080 -> c1:80), containers sharing a netns, nodes with no way
out, VXLAN tunnels over their underlay, virtual addresses. Built from the
validated model only; every label goes through nsbox/textsafe.py.
"""

from __future__ import annotations

import re
import shlex

from nsbox.wire import routing
from nsbox.model import Lab, Node, linkopts
from nsbox.plan.facts import Facts, facts
from nsbox.textsafe import controls as _e, dot_string, mermaid_text

FORMATS = ("text", "mermaid", "dot")


def render(lab: Lab, fmt: str = "text") -> str:
    return {"text": text, "mermaid": mermaid, "dot": dot}[fmt](lab)


def _tags(node: Node, f: Facts) -> list[str]:
    """NAT: the node rewrites sources towards another network (MASQUERADE/SNAT; a
    DNAT-only node such as an embedded-DNS container is not tagged)."""
    return [t for t, on in (("NAT", node.name in f.nat_nodes()),
                            ("no default route", node.name in f.no_way_out)) if on]


def _gateway_first(lab: Lab, a: str, b: str) -> bool:
    """True when node B is A's way out (A's default gateway): the edge is then
    written B -> A so layouts put the way out on one side and what hangs below a
    node on the other, and the host -> internet line does not run through a LAN box."""
    from nsbox.plan.facts import owner_of
    return any(r.dst == "default" and r.via and owner_of(lab, r.via) == b for r in lab.nodes[a].routes)


def _ordered_veths(lab: Lab) -> list[tuple[str, str, str, str]]:
    out = []
    for p in lab.veths:
        if _gateway_first(lab, p.a_node, p.b_node):
            out.append((p.b_node, p.b_name, p.a_node, p.a_name))
        else:
            out.append((p.a_node, p.a_name, p.b_node, p.b_name))
    return out


def _iface_of(lab: Lab, node: str | None, ip: str) -> str | None:
    """The interface of NODE that holds IP (the target of a forward)."""
    if node is None:
        return None
    import ipaddress
    for a in lab.nodes[node].addresses:
        try:
            if ipaddress.ip_address(a.ip) == ipaddress.ip_address(ip):
                return a.iface
        except ValueError:
            continue
    return None


def _addrs(node: Node, iface: str) -> str:
    return ", ".join(a.cidr for a in node.addresses_of(iface))


def text(lab: Lab) -> str:
    out = [_e(f"{lab.name}: {lab.description}".rstrip(": "))]
    peers = {}
    for p in lab.veths:
        peers[(p.a_node, p.a_name)] = (p.b_node, p.b_name)
        peers[(p.b_node, p.b_name)] = (p.a_node, p.a_name)
    parents = {(k.node, k.name): k.parent for k in lab.links if k.parent}
    f = facts(lab)
    for node in lab.nodes.values():
        tags = _tags(node, f)
        machine = lab.machine_of(node.name)
        if machine is not None and machine != node.name:
            tags.append(f"machine {_e(machine)}")
        out.append(f"\nnode {_e(node.name)}" + (f"  [{', '.join(tags)}]" if tags else ""))
        for iface in node.interfaces.values():
            if iface.name == "lo" and not node.addresses_of("lo") and not _options(iface):
                continue
            line = f"  {_e(iface.name)} ({_e(iface.kind)})"
            if iface.master:
                line += f" in bridge {_e(iface.master)}"
            if (node.name, iface.name) in parents:
                pn, pi = parents[(node.name, iface.name)]
                line += f" on {_e(pn)}:{_e(pi)}"
            if (node.name, iface.name) in peers:
                pn, pi = peers[(node.name, iface.name)]
                line += f" <-> {_e(pn)}:{_e(pi)}"
            if _addrs(node, iface.name):
                line += f"  {_e(_addrs(node, iface.name))}"
            opts = _options(iface)
            if opts:
                line += f"  [{_e(opts)}]"
            out.append(line)
        # routes with all their options, then rules, neighbour and FDB entries, as `ip`/`bridge` words
        for obj in [*node.routes, *node.rules, *node.neighs, *node.fdbs]:
            words = shlex.split(routing.ip_text(obj))  # quoted shell words: a name may hold spaces
            out.append("  " + " ".join(_e(w) for w in words if w not in ("ip", "bridge", "-6", "add")))
        for name in [node.name, *(c.name for c in lab.containers.values() if c.node == node.name)]:
            mine = [f"{s.kind}/{s.port}" for s in node.servers if node.server_name(s) == name]
            who = "" if name == node.name else f"container {_e(name)} (this netns) "
            if mine or who:
                out.append(f"  {who}serves " + (_e(", ".join(mine)) or "nothing"))
        for p in f.nat:
            if p.node == node.name:
                out.append(f"  NAT: {_e(p.label)}")
        for fw in f.forwards:
            if fw.node == node.name:
                out.append(f"  forward {_e(fw.label)}")
        for t in f.tunnels:
            if t.node == node.name:
                out.append(f"  tunnel {_e(t.iface)}: {_e(t.label)}")
    for v in lab.virtuals:
        where = f" on {v.node}" if v.node else ""
        out.append(_e(f"virtual {v.ip}" + (f" {v.proto}/{v.port}" if v.port else "") + where
                      + (f"  ({v.name})" if v.name else "")).join(("\n", "")) + ": answered by rules, no interface or server")
    return "\n".join(out) + "\n"


def _id(*parts: str) -> str:
    """A Mermaid/dot identifier: letters, digits and underscores only."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def _boxes(lab: Lab, f: Facts, node: str) -> list[tuple[str, str]]:
    """(id, label) of the notes drawn inside NODE's box: its NAT points, forwards,
    the containers sharing its netns, virtual addresses its rules answer."""
    out = []
    for i, p in enumerate(x for x in f.nat if x.node == node):
        out.append((_id(node, "nat", str(i)), "NAT " + p.label))
    for i, fw in enumerate(x for x in f.forwards if x.node == node):
        out.append((_id(node, "fwd", str(i)), fw.label))
    for s in f.shared:
        if s.node == node:
            out.append((_id(node, "ctr", s.container), f"container {s.container} shares {node}'s netns"))
    for i, v in enumerate(lab.virtuals):
        if v.node == node:
            out.append((_id(node, "virt", str(i)), f.virtuals[i]))
    return out


def _links(lab: Lab, f: Facts) -> list[tuple[str, str, str]]:
    """(from id, to id, label) of the lines from the notes: a NAT point to the uplink
    it rewrites on, a forward to the interface it sends to, a tunnel to its underlay."""
    out = []
    for node in lab.nodes:
        for i, p in enumerate(x for x in f.nat if x.node == node):
            if p.out and p.out in lab.nodes[node].interfaces:
                out.append((_id(node, "nat", str(i)), _id(node, p.out), "rewrites sources"))
        for i, fw in enumerate(x for x in f.forwards if x.node == node):
            iface = _iface_of(lab, fw.to_node, fw.to_ip)
            if iface:
                out.append((_id(node, "fwd", str(i)), _id(fw.to_node, iface), fw.how))
    for t in f.tunnels:
        if t.underlay and t.underlay in lab.nodes[t.node].interfaces:
            out.append((_id(t.node, t.iface), _id(t.node, t.underlay), t.label))
    for i, a in enumerate(f.tunnels):  # the overlay: tunnel ends with the same VNI on other nodes
        for b in f.tunnels[i + 1:]:
            if a.vni is not None and a.vni == b.vni and a.node != b.node:
                out.append((_id(a.node, a.iface), _id(b.node, b.iface), f"VXLAN {a.vni} tunnel"))
    return out


def mermaid(lab: Lab) -> str:
    out = ["flowchart LR"]
    f = facts(lab)
    for node in lab.nodes.values():
        label = mermaid_text(node.name) + "".join(f" ({t})" for t in _tags(node, f))
        out.append(f'  subgraph {_id("ns", node.name)}["{label}"]')
        for iface in node.interfaces.values():
            if iface.name == "lo":
                continue
            addr = _addrs(node, iface.name)
            text_ = mermaid_text(iface.name) + (f"<br/>{mermaid_text(addr)}" if addr else "")
            shape = ('[["', '"]]') if iface.kind == "bridge" else ('["', '"]')
            out.append(f"    {_id(node.name, iface.name)}{shape[0]}{text_}{shape[1]}")
        for bid, blabel in _boxes(lab, f, node.name):
            out.append(f'    {bid}["{mermaid_text(blabel)}"]')
        out.append("  end")
    for i, v in enumerate(lab.virtuals):
        if v.node is None:
            out.append(f'  {_id("virt", str(i))}["{mermaid_text(f.virtuals[i])}"]')
    for node in lab.nodes.values():
        for iface in node.interfaces.values():
            if iface.master:
                out.append(f"  {_id(node.name, iface.name)} --- {_id(node.name, iface.master)}")
    for an, ai, bn, bi in _ordered_veths(lab):
        out.append(f"  {_id(an, ai)} <-->|veth| {_id(bn, bi)}")
    for k in lab.links:
        if k.parent:
            out.append(f"  {_id(k.node, k.name)} -->|{mermaid_text(k.kind)}| {_id(*k.parent)}")
    for a, b, label in _links(lab, f):
        out.append(f"  {a} -->|{mermaid_text(label)}| {b}")
    return "\n".join(out) + "\n"


def dot(lab: Lab) -> str:
    out = [f'graph {dot_string(lab.name)} {{', "  rankdir=LR;", '  graph [fontname="monospace"];',
           '  node [shape=box, fontname="monospace"];', '  edge [fontname="monospace", fontsize=10];']
    f = facts(lab)
    for node in lab.nodes.values():
        label = dot_string(node.name + "".join(f" ({t})" for t in _tags(node, f)))
        out += [f"  subgraph cluster_{_id(node.name)} {{", f"    label={label};"]
        for iface in node.interfaces.values():
            if iface.name == "lo":
                continue
            addr = _addrs(node, iface.name)
            shape = ", shape=box3d" if iface.kind == "bridge" else ""
            label = dot_string(iface.name)[:-1] + (dot_string(addr)[1:-1].join(("\\n", "")) if addr else "") + '"'
            out.append(f"    {_id(node.name, iface.name)} [label={label}{shape}];")
        for bid, blabel in _boxes(lab, f, node.name):
            out.append(f"    {bid} [label={dot_string(blabel)}, shape=note];")
        out.append("  }")
    for i, v in enumerate(lab.virtuals):
        if v.node is None:
            out.append(f"  {_id('virt', str(i))} [label={dot_string(f.virtuals[i])}, shape=note];")
    for node in lab.nodes.values():
        for iface in node.interfaces.values():
            if iface.master:
                # bridge first: dot ranks tail before head, so the bridge stands between its
                # ports' way in and the namespaces behind them
                out.append(f"  {_id(node.name, iface.master)} -- {_id(node.name, iface.name)} [style=dashed];")
    for an, ai, bn, bi in _ordered_veths(lab):
        out.append(f'  {_id(an, ai)} -- {_id(bn, bi)} [label="veth"];')
    for k in lab.links:
        if k.parent:
            out.append(f"  {_id(k.node, k.name)} -- {_id(*k.parent)} [label={dot_string(k.kind)}, style=dotted];")
    for a, b, label in _links(lab, f):
        out.append(f"  {a} -- {b} [label={dot_string(label)}, style=bold];")
    out.append("}")
    return "\n".join(out) + "\n"


def _options(iface) -> str:
    """Link options that differ from the kernel's defaults, as `ip` words: the MAC,
    MTU, qlen, STP, port flags, and `down` for an interface left down."""
    words = linkopts.link_words(iface).strip() + linkopts.bridge_words(iface)
    words += (" " + linkopts.port_words(iface)) if linkopts.port_words(iface) else ""
    if not iface.up:
        words += " down"
    return words.strip()
