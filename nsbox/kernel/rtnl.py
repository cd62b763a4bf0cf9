"""Batched rtnetlink: one plain netlink socket per namespace, requests sent together.

pyroute2 0.9's IPRoute runs an asyncio loop round per request (~1 ms of Python
per call, measured by bench/bench_bridge.py), which dominated lab bring-up.
Here pyroute2's message classes still encode every request, but the requests
for a node go out in one sendmsg and their acks are matched back by sequence
number, so an error names the exact step that failed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from nsbox.errors import KernelError
from nsbox.kernel import netns

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
IFF_UP = 1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3          # what `ip route add` uses
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_CHUNK = 64              # requests per sendmsg: their acks fit the default receive buffer
# GETs are answered with whole link objects: a chunk of 64 bridges' replies overflowed
# the socket's receive buffer (ENOBUFS, and the replies are lost). 16 replies of at
# most a few KB each fit the default 208 KB, which an unprivileged sandbox cannot raise.
_GET_CHUNK = 16
RTEXT_FILTER_SKIP_STATS = 1 << 3
_HDR = struct.Struct("=IHHII")


class Rtnl:
    """Queue rtnetlink requests for one namespace and send them in batches."""

    def __init__(self, node: str, path: str) -> None:
        self.node = node
        self.sock = netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.pending: list[tuple[int, str, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    # -- requests --
    def queue(self, text: str, msg, msg_type: int, flags: int = _CREATE) -> None:
        """Queue MSG (a pyroute2 message); TEXT is the `ip` command it stands for."""
        self.seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.pending.append((self.seq, text, msg.data))

    def flush(self) -> None:
        """Send what is queued; raise KernelError naming the first step the kernel refused."""
        pending, self.pending = self.pending, []
        replies = self._round_trip(pending)
        errors = {seq: err for seq, (msg_type, body) in replies.items()
                  if msg_type == NLMSG_ERROR and (err := _error(body))}
        if errors:
            seq = min(errors)
            text = next(t for s, t, _ in pending if s == seq)
            raise KernelError(f"{self.node}: {text}: {os.strerror(errors[seq])}")

    def indexes(self, names: list[str]) -> dict[str, int]:
        """ifindex of each interface NAME, in one round trip (`ip link show NAME`)."""
        self.flush()
        asked: list[tuple[int, str, bytes]] = []
        for name in names:
            m = ifinfmsg()
            # Without stats a bridge's reply is ~1 KB instead of ~3 KB.
            m["attrs"] = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
            self.seq += 1
            m["header"].update({"type": RTM_GETLINK, "flags": NLM_F_REQUEST, "sequence_number": self.seq})
            m.encode()
            asked.append((self.seq, name, m.data))
        found: dict[str, int] = {}
        replies = self._round_trip(asked, _GET_CHUNK)
        for seq, name, _ in asked:
            msg_type, body = replies[seq]
            if msg_type != RTM_NEWLINK:
                raise KernelError(f"{self.node}: no interface {name}: {os.strerror(_error(body))}")
            found[name] = struct.unpack_from("=BxHi", body)[2]
        return found

    def _round_trip(self, requests: list[tuple[int, str, bytes]],
                    chunk_size: int = _CHUNK) -> dict[int, tuple[int, bytes]]:
        """Send REQUESTS (seq, text, data) in chunks; the first reply to each: seq -> (type, body).

        Every request gets exactly one answer: an ack or error (NLMSG_ERROR), or for a
        GET without NLM_F_ACK the object itself."""
        replies: dict[int, tuple[int, bytes]] = {}
        for i in range(0, len(requests), chunk_size):
            chunk = requests[i:i + chunk_size]
            self.sock.sendall(b"".join(data for _, _, data in chunk))
            want = {seq for seq, _, _ in chunk}
            while want:
                for seq, msg_type, body in self._messages():
                    if seq in want:
                        want.discard(seq)
                        replies[seq] = (msg_type, body)
        return replies

    def _messages(self):
        data = self.sock.recv(1 << 20)
        off = 0
        while off + _HDR.size <= len(data):
            length, msg_type, _, seq, _ = _HDR.unpack_from(data, off)
            yield seq, msg_type, data[off + _HDR.size: off + length]
            off += (length + 3) & ~3


def _error(body: bytes) -> int:
    """errno of an NLMSG_ERROR body (0 = ack)."""
    return -struct.unpack_from("=i", body)[0]


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


def operstate(path: str, ifname: str) -> str:
    """The kernel's operstate of IFNAME in the netns at PATH ("UP", "DOWN",
    "LOWERLAYERDOWN", ...), read with RTM_GETLINK: what `ip link` shows after `state`."""
    nl = Rtnl("operstate", path)
    try:
        m = ifinfmsg()
        m["attrs"] = [("IFLA_IFNAME", ifname), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        nl.seq += 1
        m["header"].update({"type": RTM_GETLINK, "flags": NLM_F_REQUEST, "sequence_number": nl.seq})
        m.encode()
        seq = nl.seq
        replies = nl._round_trip([(seq, ifname, m.data)])
        msg_type, body = replies[seq]
        if msg_type != RTM_NEWLINK:
            raise KernelError(f"no interface {ifname}: {os.strerror(_error(body))}")
        reply = ifinfmsg(_HDR.pack(_HDR.size + len(body), msg_type, 0, seq, 0) + body)
        reply.decode()
        return str(reply.get_attr("IFLA_OPERSTATE"))
    finally:
        nl.close()


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
