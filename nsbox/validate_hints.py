"""Warnings about labs the kernel builds but that cannot work as their checks expect: what
validation cannot refuse (the kernel takes it) yet a lab author would otherwise meet only
as "host unreachable" or "timeout" in the report (issue 16: a Calico-style node without a
route to 169.254.1.1, a probe from a node that has no address).

Each warning is one line; `nsbox run` prints them on stderr before building, and the lab
is built and verified as written."""

from __future__ import annotations

import ipaddress

from nsbox.model import Lab, Node, ReachCheck


def warnings(lab: Lab) -> list[str]:
    out: list[str] = []
    try:
        out += _addressless_sources(lab)
        out += _proxy_arp_without_route(lab)
    except Exception:  # a hint must never break a run; validation has judged the lab already
        pass
    return out


def _addressless_sources(lab: Lab) -> list[str]:
    """An allow probe whose source node holds no address of the destination's family (other
    than loopback): the kernel has no source address to give it, so it leaves from 0.0.0.0
    (or not at all) and no reply can come back."""
    out: list[str] = []
    for c in lab.checks:
        if not isinstance(c, ReachCheck) or not c.allow:
            continue
        target = lab.target(c.src, c.dst, c.proto, c.port, c.family)
        if target.loopback or ipaddress.ip_address(target.ip).is_loopback:
            continue
        src = lab.netns_of(c.src)
        version = ipaddress.ip_address(target.ip).version
        if not any(ipaddress.ip_interface(a.cidr).version == version for a in src.addresses):
            out.append(f"check '{c.name}': {src.name} has no IPv{version} address, so its probe would leave "
                       f"from {'0.0.0.0' if version == 4 else '::'} and no answer can come back; give "
                       f"{src.name} an address (a Calico or ptp node needs one besides its pod veths)")
    return out


def _proxy_arp_without_route(lab: Lab) -> list[str]:
    """proxy_arp=1 on IFACE answers ARP for a target only if the node routes that target out
    of another device (arp_process: the route's device must differ from the one asked on).
    The targets asked for are the gateways the peer across IFACE routes through."""
    out: list[str] = []
    for node in lab.nodes.values():
        for key, value in node.sysctls.items():
            parts = key.split(".")
            if len(parts) != 5 or parts[:3] != ["net", "ipv4", "conf"] or parts[4] != "proxy_arp" or value != "1":
                continue
            iface = parts[3].replace("/", ".")
            for gw in _gateways_asked_on(lab, node, iface):
                dev = _route_dev(node, gw)
                if dev is None or dev == iface or dev.startswith("("):
                    how = ("no route to it" if dev is None else f"its route to it goes out of {iface} itself"
                           if dev == iface else f"only a {dev.strip('()')} route to it")
                    out.append(f"node {node.name}: proxy_arp on {iface} cannot answer for {gw} (the gateway "
                               f"behind it): {node.name} has {how}, and the kernel answers proxy ARP only for "
                               f"a target routed out of another device (a default route would do)")
    return out


def _gateways_asked_on(lab: Lab, node: Node, iface: str) -> list[str]:
    """The gateways the node at the other end of veth IFACE of NODE routes through it."""
    out: list[str] = []
    for v in lab.veths:
        for here, there in (((v.a_node, v.a_name), (v.b_node, v.b_name)), ((v.b_node, v.b_name), (v.a_node, v.a_name))):
            if here != (node.name, iface):
                continue
            peer = lab.nodes[there[0]]
            for r in peer.routes:
                if r.via and not r.delete and r.dev in (None, there[1]) and r.via not in out:
                    out.append(r.via)
    return out


def _route_dev(node: Node, ip: str) -> str | None:
    """The device of NODE's longest-prefix route (main table, unicast) to IP, or None:
    its connected prefixes and its declared routes; a route via a gateway with no dev
    counts as leaving by some device other than the one asked on."""
    addr = ipaddress.ip_address(ip)
    best: tuple[int, str] | None = None
    candidates: list[tuple[object, str]] = []
    deleted = {ipaddress.ip_network(r.dst, strict=False) for r in node.routes if r.delete and r.dst != "default"}
    for a in node.addresses:
        iface = ipaddress.ip_interface(a.cidr)
        if not a.noprefixroute and iface.network.prefixlen < iface.max_prefixlen and iface.network not in deleted:
            candidates.append((iface.network, a.iface))
    for r in node.routes:
        if r.delete or r.table not in (None, "main", "254"):
            continue
        net = ipaddress.ip_network("0.0.0.0/0" if r.dst == "default" else r.dst, strict=False)
        # a typed route (blackhole, unreachable, prohibit) wins the lookup but answers nothing
        candidates.append((net, f"({r.type})" if r.type not in (None, "unicast") else r.dev or f"via {r.via}"))
    for net, dev in candidates:
        if net.version == addr.version and addr in net and (best is None or net.prefixlen >= best[0]):
            best = (net.prefixlen, dev)
    return best[1] if best else None
