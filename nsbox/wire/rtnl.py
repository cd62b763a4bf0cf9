"""rtnetlink requests as pyroute2 messages, each the equivalent of one `ip` command.

Pure encoding: nothing here opens a socket (nsbox/host/rtnl.py sends them).
"""

from __future__ import annotations

import ipaddress
import socket

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE  # noqa: F401 (re-exported)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

IFF_UP = 1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3          # what `ip route add` uses
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_CREATE = CREATE


# -- message builders: each the equivalent of one `ip` command --

def link_up(index: int) -> ifinfmsg:
    m = ifinfmsg()
    m["index"] = index
    m["flags"] = IFF_UP
    m["change"] = IFF_UP
    return m


def bridge(name: str, mtu: int | None, attrs: list | None = None, data: list | None = None) -> ifinfmsg:
    """`ip link add NAME [address/txqueuelen: ATTRS] type bridge [stp_state/vlan_filtering: DATA]`."""
    m = ifinfmsg()
    a: list = [("IFLA_IFNAME", name)]
    if mtu:
        a.append(("IFLA_MTU", mtu))
    a += [x for x in attrs or [] if x[0] != "IFLA_MTU"]
    info: list = [("IFLA_INFO_KIND", "bridge")]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    a.append(("IFLA_LINKINFO", {"attrs": info}))
    m["attrs"] = a
    return m


def veth(name: str, peer: str, peer_netns_fd: int, master: int | None, mtu: int | None,
         attrs: list | None = None, peer_attrs: list | None = None, up: bool = True) -> ifinfmsg:
    """NAME here, up (unless UP is False) and enslaved to MASTER; PEER created directly in
    the other namespace. ATTRS / PEER_ATTRS: each side's IFLA_ADDRESS, IFLA_MTU, IFLA_TXQLEN."""
    m = ifinfmsg()
    if up:
        m["flags"] = IFF_UP
        m["change"] = IFF_UP
    a: list = [("IFLA_IFNAME", name)]
    p: list = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]
    if mtu:
        a.append(("IFLA_MTU", mtu))
        p.append(("IFLA_MTU", mtu))
    a += [x for x in attrs or [] if x[0] != "IFLA_MTU"]
    p += [x for x in peer_attrs or [] if x[0] != "IFLA_MTU"]
    if master:
        a.append(("IFLA_MASTER", master))
    a.append(("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_KIND", "veth"),
        ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": p})]}),
    ]}))
    m["attrs"] = a
    return m


def link_set(index: int, attrs: list) -> ifinfmsg:
    """`ip link set DEV mtu N txqueuelen N` on an existing link (the loopback device)."""
    m = ifinfmsg()
    m["index"] = index
    m["attrs"] = attrs
    return m


def bridge_port(index: int, data: list) -> ifinfmsg:
    """`ip link set DEV type bridge_slave hairpin on isolated on`: the port's options."""
    m = ifinfmsg()
    m["index"] = index
    m["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                                               ("IFLA_INFO_SLAVE_DATA", {"attrs": data})]})]
    return m


IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200


def address(index: int, cidr: str, nodad: bool = False, noprefixroute: bool = False) -> ifaddrmsg:
    """Like `ip addr add CIDR dev X [nodad] [noprefixroute]`, plus the broadcast Docker's
    netlink library sets."""
    iface = ipaddress.ip_interface(cidr)
    m = ifaddrmsg()
    if nodad:
        m["flags"] = IFA_F_NODAD  # no duplicate address detection: usable at once
    attrs_flags = IFA_F_NOPREFIXROUTE if noprefixroute else 0
    m["family"] = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
    m["prefixlen"] = iface.network.prefixlen
    m["index"] = index
    ip = str(iface.ip)
    attrs: list = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    if iface.version == 4 and iface.network.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    if attrs_flags:
        # The 8-bit ifa_flags cannot hold it: iproute2 sends IFA_FLAGS (the full 32 bits).
        attrs.append(("IFA_FLAGS", attrs_flags | (m["flags"] or 0)))
    m["attrs"] = attrs
    return m


def route(dst: str, via: str | None, oif: int | None) -> rtmsg:
    """`ip route add DST [via VIA] [dev OIF]` in the main table."""
    v6 = ":" in (via or dst)
    net = ipaddress.ip_network(("::/0" if v6 else "0.0.0.0/0") if dst == "default" else dst)
    m = rtmsg()
    m["family"] = socket.AF_INET6 if v6 else socket.AF_INET
    m["dst_len"] = net.prefixlen
    m["table"] = RT_TABLE_MAIN
    m["proto"] = RTPROT_BOOT
    m["scope"] = RT_SCOPE_UNIVERSE if via else RT_SCOPE_LINK
    m["type"] = RTN_UNICAST
    attrs: list = []
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    if via:
        attrs.append(("RTA_GATEWAY", via))
    if oif:
        attrs.append(("RTA_OIF", oif))
    m["attrs"] = attrs
    return m
