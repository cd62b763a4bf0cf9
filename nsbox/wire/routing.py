"""Routes, policy rules, neighbour and FDB entries: each as the exact command a
person types (`ip route add …`, `ip rule add …`, `ip neigh add …`, `bridge fdb
add …`) and as the rtnetlink request nsbox sends for it.

The two must say the same thing: the request is built field by field the way
iproute2 6.1 builds it for that command line (ip/iproute.c, ip/iprule.c,
ip/ipneigh.c, bridge/fdb.c), and tests/kernel/test_kernel_routing.py builds both and
compares what the kernel then holds.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
from typing import Callable

from nsbox.model.lab import Fdb, Neigh, PolicyRule, Route

# pyroute2 is imported only by the encoders: validation uses the names and
# numbers below and must run (and say what is missing) without it.
RTM_NEWROUTE, RTM_NEWNEIGH, RTM_NEWRULE = 24, 28, 32  # linux/rtnetlink.h
RTM_DELROUTE = 25

# iproute2's /usr/share/iproute2/rt_tables, rt_scopes, rt_protos: the names `ip` knows.
TABLES = {"default": 253, "main": 254, "local": 255}
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
PROTOS = {"redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "zebra": 11, "bird": 12,
          "dhcp": 16, "keepalived": 18, "babel": 42, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189}
NUD = {"reachable": 0x02, "stale": 0x04, "noarp": 0x40, "permanent": 0x80}
FDB_STATES = ("static", "permanent", "dynamic")
RTNH_F_ONLINK = 4
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT = 2
NTF_SELF, NTF_MASTER, NTF_PROXY = 0x02, 0x04, 0x08
AF_BRIDGE = 7
RTN_UNICAST = 1
RT_TABLE_UNSPEC = 0
# Route types that drop (linux/rtnetlink.h): `ip route add blackhole|unreachable|prohibit DST`.
ROUTE_TYPES = {"blackhole": 6, "unreachable": 7, "prohibit": 8}

IndexOf = Callable[[str], int]  # interface name -> ifindex in the node


# -- names and numbers, as `ip` reads them (ValueError: not something ip accepts) --

def table_id(table: str | None) -> int:
    if table is None:
        return TABLES["main"]
    return _named(table, TABLES, 1, 2**32 - 1, "table")


def scope_id(scope: str) -> int:
    return _named(scope, SCOPES, 0, 255, "scope")


def proto_id(proto: str) -> int:
    return _named(proto, PROTOS, 0, 255, "proto")


def _named(value: str, names: dict[str, int], lo: int, hi: int, what: str) -> int:
    if value in names:
        return names[value]
    if value.isdigit() and lo <= int(value) <= hi:
        return int(value)
    raise ValueError(f"{what} {value!r} is neither {lo}-{hi} nor one of {', '.join(names)}")


def route_family(r: Route) -> int:
    """6 when any address in the route is IPv6; `default` alone is IPv4, as with `ip route add`."""
    for a in (r.dst if r.dst != "default" else None, r.via, r.src):
        if a is not None and ":" in a:
            return 6
    return 4


def route_dst(r: Route) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if r.dst == "default":
        return ipaddress.ip_network("::/0" if route_family(r) == 6 else "0.0.0.0/0")
    return ipaddress.ip_network(r.dst)


def route_scope(r: Route) -> int:
    """What the kernel gets: the given scope, else link without a gateway, universe with one."""
    if r.scope is not None:
        return scope_id(r.scope)
    if r.type is not None:
        return SCOPES["universe"]  # iproute2: only unicast routes without a gateway get scope link
    return SCOPES["universe"] if r.via else SCOPES["link"]


def route_metric(r: Route) -> int:
    """The metric the kernel keys the route by: IPv6 turns 0 (or none) into 1024."""
    if route_family(r) == 6:
        return r.metric or 1024
    return r.metric or 0


# -- routes --

def route_text(r: Route) -> str:
    words = ["ip", "-6"] if route_family(r) == 6 and r.dst == "default" and not r.via and not r.src else ["ip"]
    words += ["route", "del" if r.delete else "add", *([r.type] if r.type else []), r.dst]
    if r.via:
        words += ["via", r.via]
    if r.dev:
        words += ["dev", r.dev]
    if r.src:
        words += ["src", r.src]
    if r.scope is not None:
        words += ["scope", r.scope]
    if r.onlink:
        words.append("onlink")
    if r.metric is not None:
        words += ["metric", str(r.metric)]
    if r.table is not None:
        words += ["table", r.table]
    if r.proto is not None:
        words += ["proto", r.proto]
    return _shell(words)


def route_msg(r: Route, index: IndexOf):
    """The RTM_NEWROUTE `ip route add` sends (iproute.c: iproute_modify)."""
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    v6 = route_family(r) == 6
    net = route_dst(r)
    m = rtmsg()
    m["family"] = socket.AF_INET6 if v6 else socket.AF_INET
    m["dst_len"] = net.prefixlen
    table = table_id(r.table)
    attrs: list = []
    if table < 256:
        m["table"] = table
    else:  # like ip: a table above 255 goes in RTA_TABLE only
        m["table"] = RT_TABLE_UNSPEC
        attrs.append(("RTA_TABLE", table))
    m["proto"] = proto_id(r.proto) if r.proto is not None else PROTOS["boot"]
    m["scope"] = route_scope(r)
    if r.delete:
        # `ip route del`: protocol unspecified and scope nowhere match any route to DST
        # (the kernel's prefix route is proto kernel, scope link).
        m["proto"], m["scope"] = 0, SCOPES["nowhere"]
    m["type"] = ROUTE_TYPES[r.type] if r.type else RTN_UNICAST
    m["flags"] = RTNH_F_ONLINK if r.onlink else 0
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    if r.via:
        attrs.append(("RTA_GATEWAY", r.via))
    if r.dev:
        attrs.append(("RTA_OIF", index(r.dev)))
    if r.src:
        attrs.append(("RTA_PREFSRC", r.src))
    if r.metric is not None:
        attrs.append(("RTA_PRIORITY", r.metric))
    m["attrs"] = attrs
    return m


# -- policy rules --

def rule_family(r: PolicyRule) -> int:
    return 6 if any(a is not None and ":" in a for a in (r.src, r.dst)) else 4


def rule_text(r: PolicyRule) -> str:
    words = ["ip", "-6"] if rule_family(r) == 6 else ["ip"]
    words += ["rule", "add"]
    if r.priority is not None:
        words += ["pref", str(r.priority)]
    if r.invert:
        words.append("not")
    if r.src:
        words += ["from", r.src]
    if r.dst:
        words += ["to", r.dst]
    if r.iif:
        words += ["iif", r.iif]
    if r.oif:
        words += ["oif", r.oif]
    if r.fwmark is not None:
        words += ["fwmark", f"{r.fwmark:#x}" + (f"/{r.fwmask:#x}" if r.fwmask is not None else "")]
    words += ["table", r.table]
    return _shell(words)


def rule_msg(r: PolicyRule):
    """The RTM_NEWRULE `ip rule add` sends (iprule.c: iprule_modify)."""
    from pyroute2.netlink.rtnl.fibmsg import fibmsg

    m = fibmsg()
    m["family"] = socket.AF_INET6 if rule_family(r) == 6 else socket.AF_INET
    m["action"] = FR_ACT_TO_TBL
    m["flags"] = FIB_RULE_INVERT if r.invert else 0
    attrs: list = []
    if r.priority is not None:
        attrs.append(("FRA_PRIORITY", r.priority))
    for key, len_field, value in (("FRA_SRC", "src_len", r.src), ("FRA_DST", "dst_len", r.dst)):
        if value:
            # ip keeps host bits (from 10.0.0.1/24), and so does the kernel
            iface = ipaddress.ip_interface(value)
            m[len_field] = iface.network.prefixlen
            attrs.append((key, str(iface.ip)))
    if r.iif:
        attrs.append(("FRA_IIFNAME", r.iif))
    if r.oif:
        attrs.append(("FRA_OIFNAME", r.oif))
    if r.fwmark is not None:
        attrs.append(("FRA_FWMARK", r.fwmark))
    if r.fwmask is not None:
        attrs.append(("FRA_FWMASK", r.fwmask))
    table = table_id(r.table)
    if table < 256:
        m["table"] = table
    else:
        m["table"] = RT_TABLE_UNSPEC
        attrs.append(("FRA_TABLE", table))
    m["attrs"] = attrs
    return m


# -- neighbour entries --

def neigh_text(n: Neigh) -> str:
    if n.proxy:
        return _shell(["ip", "neigh", "add", "proxy", n.ip, "dev", n.dev])
    lladdr = ["lladdr", n.lladdr] if n.lladdr else []
    return _shell(["ip", "neigh", "add", n.ip, *lladdr, "dev", n.dev, "nud", n.state])


def neigh_msg(n: Neigh, index: IndexOf):
    """The RTM_NEWNEIGH `ip neigh add` sends (ipneigh.c: ipneigh_modify)."""
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    m = ndmsg()
    m["family"] = socket.AF_INET6 if ":" in n.ip else socket.AF_INET
    m["ifindex"] = index(n.dev)
    m["state"] = NUD["permanent"] if n.proxy else NUD[n.state]
    m["flags"] = NTF_PROXY if n.proxy else 0
    attrs: list = [("NDA_DST", n.ip)]
    if n.lladdr and not n.proxy:
        attrs.append(("NDA_LLADDR", n.lladdr))
    m["attrs"] = attrs
    return m


# -- forwarding database entries --

def fdb_text(f: Fdb) -> str:
    words = ["bridge", "fdb", "add", f.mac, "dev", f.dev, "master" if f.master else "self", f.state]
    if f.dst:
        words += ["dst", f.dst]
    if f.vlan is not None:
        words += ["vlan", str(f.vlan)]
    return _shell(words)


def fdb_msg(f: Fdb, index: IndexOf):
    """The RTM_NEWNEIGH `bridge fdb add` sends (bridge/fdb.c: fdb_modify): state starts
    as NUD_NOARP; static adds NUD_REACHABLE, permanent NUD_PERMANENT, dynamic is
    NUD_REACHABLE alone."""
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    m = ndmsg()
    m["family"] = AF_BRIDGE
    m["ifindex"] = index(f.dev)
    m["state"] = {"static": NUD["noarp"] | NUD["reachable"], "permanent": NUD["noarp"] | NUD["permanent"],
                  "dynamic": NUD["reachable"]}[f.state]
    m["flags"] = NTF_MASTER if f.master else NTF_SELF
    attrs: list = [("NDA_LLADDR", f.mac.lower())]
    if f.dst:
        attrs.append(("NDA_DST", f.dst))
    if f.vlan is not None:
        attrs.append(("NDA_VLAN", f.vlan))
    m["attrs"] = attrs
    return m


# -- one interface for the planner: text, request, message type, interfaces needed --

def _shell(words: list[str]) -> str:
    """WORDS as one shell command line (`nsbox explain` runs these texts): each word quoted."""
    return " ".join(shlex.quote(w) for w in words)


def ip_text(obj: Route | PolicyRule | Neigh | Fdb) -> str:
    if isinstance(obj, Route):
        return route_text(obj)
    if isinstance(obj, PolicyRule):
        return rule_text(obj)
    if isinstance(obj, Neigh):
        return neigh_text(obj)
    return fdb_text(obj)


def encode(obj: Route | PolicyRule | Neigh | Fdb, index: IndexOf):
    """The pyroute2 message for OBJ (ifindexes looked up with INDEX)."""
    if isinstance(obj, Route):
        return route_msg(obj, index)
    if isinstance(obj, PolicyRule):
        return rule_msg(obj)
    if isinstance(obj, Neigh):
        return neigh_msg(obj, index)
    return fdb_msg(obj, index)


def msg_type(obj: Route | PolicyRule | Neigh | Fdb) -> int:
    if isinstance(obj, Route):
        return RTM_DELROUTE if obj.delete else RTM_NEWROUTE
    if isinstance(obj, PolicyRule):
        return RTM_NEWRULE
    return RTM_NEWNEIGH


def needs(obj: Route | PolicyRule | Neigh | Fdb) -> tuple[str, ...]:
    """Interfaces whose ifindex the request carries (a rule names interfaces by name)."""
    if isinstance(obj, Route):
        return (obj.dev,) if obj.dev else ()
    if isinstance(obj, PolicyRule):
        return ()
    return (obj.dev,)
