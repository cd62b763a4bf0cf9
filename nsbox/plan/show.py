"""`nsbox show`: the lab's topology as text, Mermaid or Graphviz dot.

Nodes (namespaces) with their interfaces and addresses, bridges with their
ports, veth pairs as edges between namespaces, routes, and NAT points (nodes
whose nat table has rules). Built from the validated model only.
"""

from __future__ import annotations

import re
import shlex

from nsbox.kernel import routing
from nsbox.model import Lab, Node, linkopts
from nsbox.textsafe import controls as _e, dot_string, mermaid_text

FORMATS = ("text", "mermaid", "dot")


def render(lab: Lab, fmt: str = "text") -> str:
    return {"text": text, "mermaid": mermaid, "dot": dot}[fmt](lab)


def _nat(node: Node) -> bool:
    nat = node.firewall.tables.get("nat")
    return nat is not None and any(c.rules for c in nat.chains.values())


def _addrs(node: Node, iface: str) -> str:
    return ", ".join(a.cidr for a in node.addresses_of(iface))


def text(lab: Lab) -> str:
    out = [_e(f"{lab.name}: {lab.description}".rstrip(": "))]
    peers = {}
    for p in lab.veths:
        peers[(p.a_node, p.a_name)] = (p.b_node, p.b_name)
        peers[(p.b_node, p.b_name)] = (p.a_node, p.a_name)
    parents = {(k.node, k.name): k.parent for k in lab.links if k.parent}
    for node in lab.nodes.values():
        tags = [t for t, on in (("NAT", _nat(node)),) if on]
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
    for v in lab.virtuals:
        where = f" on {v.node}" if v.node else ""
        out.append(_e(f"virtual {v.ip}" + (f" {v.proto}/{v.port}" if v.port else "") + where
                      + (f"  ({v.name})" if v.name else "")).join(("\n", "")) + ": answered by rules, no interface or server")
    return "\n".join(out) + "\n"


def _id(*parts: str) -> str:
    """A Mermaid/dot identifier: letters, digits and underscores only."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def mermaid(lab: Lab) -> str:
    out = ["flowchart LR"]
    for node in lab.nodes.values():
        label = mermaid_text(node.name) + (" (NAT)" if _nat(node) else "")
        out.append(f'  subgraph {_id("ns", node.name)}["{label}"]')
        for iface in node.interfaces.values():
            if iface.name == "lo":
                continue
            addr = _addrs(node, iface.name)
            text_ = mermaid_text(iface.name) + (f"<br/>{mermaid_text(addr)}" if addr else "")
            shape = ('[["', '"]]') if iface.kind == "bridge" else ('["', '"]')
            out.append(f"    {_id(node.name, iface.name)}{shape[0]}{text_}{shape[1]}")
        out.append("  end")
    for node in lab.nodes.values():
        for iface in node.interfaces.values():
            if iface.master:
                out.append(f"  {_id(node.name, iface.name)} --- {_id(node.name, iface.master)}")
    for p in lab.veths:
        out.append(f"  {_id(p.a_node, p.a_name)} <-->|veth| {_id(p.b_node, p.b_name)}")
    for k in lab.links:
        if k.parent:
            out.append(f"  {_id(k.node, k.name)} -->|{mermaid_text(k.kind)}| {_id(*k.parent)}")
    return "\n".join(out) + "\n"


def dot(lab: Lab) -> str:
    out = [f'graph {dot_string(lab.name)} {{', "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for node in lab.nodes.values():
        label = dot_string(node.name + (" (NAT)" if _nat(node) else ""))
        out += [f"  subgraph cluster_{_id(node.name)} {{", f"    label={label};"]
        for iface in node.interfaces.values():
            if iface.name == "lo":
                continue
            addr = _addrs(node, iface.name)
            shape = ", shape=box3d" if iface.kind == "bridge" else ""
            label = dot_string(iface.name)[:-1] + (dot_string(addr)[1:-1].join(("\\n", "")) if addr else "") + '"'
            out.append(f"    {_id(node.name, iface.name)} [label={label}{shape}];")
        out.append("  }")
    for node in lab.nodes.values():
        for iface in node.interfaces.values():
            if iface.master:
                out.append(f"  {_id(node.name, iface.name)} -- {_id(node.name, iface.master)} [style=dashed];")
    for p in lab.veths:
        out.append(f'  {_id(p.a_node, p.a_name)} -- {_id(p.b_node, p.b_name)} [label="veth"];')
    for k in lab.links:
        if k.parent:
            out.append(f"  {_id(k.node, k.name)} -- {_id(*k.parent)} [label={dot_string(k.kind)}, style=dotted];")
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
