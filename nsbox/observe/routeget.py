"""The kernel's own route lookup in a namespace: RTM_GETROUTE, what `ip route get DST
[from SRC]` asks. An output lookup that ends in a dropping route type comes back as an
error, which names the type: blackhole EINVAL, unreachable EHOSTUNREACH, prohibit
EACCES; no route at all is ENETUNREACH."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass

from nsbox.host import netns

RTM_GETROUTE = 26
RTM_NEWROUTE = 24
RTN_NAMES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
ERRNO_TYPES = {errno.EINVAL: "blackhole", errno.EHOSTUNREACH: "unreachable", errno.EACCES: "prohibit",
               errno.ENETUNREACH: "no route"}


@dataclass(frozen=True)
class Lookup:
    route_type: str          # unicast, local, ..., blackhole, unreachable, prohibit, "no route"
    via: str | None = None   # the gateway, None for a direct route
    dev: str | None = None
    src: str | None = None
    error: str | None = None  # the kernel's refusal, as `ip route get` prints it

    def words(self) -> str:
        """As `ip route get` shows it."""
        if self.error:
            return f"{self.route_type} ({self.error})"
        out = [self.route_type]
        out += ["via", self.via] if self.via else ["direct"]
        if self.dev:
            out += ["dev", self.dev]
        if self.src:
            out += ["src", self.src]
        return " ".join(out)


def route_get(path: str, dst: str, src: str | None = None) -> Lookup:
    """Ask the kernel of the netns at PATH how it routes DST (from SRC)."""
    from pyroute2.netlink import NLM_F_REQUEST
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    from nsbox.host.rtnl import NLMSG_ERROR, Rtnl, _error, _HDR

    ip = ipaddress.ip_address(dst)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    nl = Rtnl("route get", path)
    try:
        m = rtmsg()
        m["family"] = family
        m["dst_len"] = ip.max_prefixlen
        attrs: list = [("RTA_DST", str(ip))]
        if src:
            m["src_len"] = ip.max_prefixlen
            attrs.append(("RTA_SRC", src))
        m["attrs"] = attrs
        nl.seq += 1
        m["header"].update({"type": RTM_GETROUTE, "flags": NLM_F_REQUEST, "sequence_number": nl.seq})
        m.encode()
        seq = nl.seq
        msg_type, body = nl._round_trip([(seq, f"ip route get {dst}", m.data)])[seq]
        if msg_type == NLMSG_ERROR:
            err = _error(body)
            return Lookup(ERRNO_TYPES.get(err, "error"), error=os.strerror(err))
        reply = rtmsg(_HDR.pack(_HDR.size + len(body), msg_type, 0, seq, 0) + body)
        reply.decode()
        oif = reply.get_attr("RTA_OIF")
        dev = None
        if oif:
            with netns.entered(path):
                dev = socket.if_indextoname(oif)
        return Lookup(RTN_NAMES.get(reply["type"], str(reply["type"])), reply.get_attr("RTA_GATEWAY"), dev,
                      reply.get_attr("RTA_PREFSRC"))
    finally:
        nl.close()


RTM_GETNEIGH, RTM_NEWNEIGH = 30, 28
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
NUD_NAMES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
             0x20: "failed", 0x40: "noarp", 0x80: "permanent"}


@dataclass(frozen=True)
class Neighbour:
    ip: str
    dev: str
    lladdr: str | None
    state: str       # as `ip neigh` prints it, lower case: reachable, stale, permanent, ...
    proxy: bool = False


def neighbours(path: str) -> list[Neighbour]:
    """The netns's neighbour table (`ip neigh show` and `ip neigh show proxy`): an
    RTM_GETNEIGH dump, IPv4 and IPv6."""
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    from nsbox.host.rtnl import NLMSG_ERROR, Rtnl, _error, _HDR

    nl = Rtnl("neigh", path)
    out: list[Neighbour] = []
    names: dict[int, str] = {}
    try:
        for proxy in (False, True):
            m = ndmsg()
            m["family"] = socket.AF_UNSPEC
            if proxy:
                m["flags"] = 0x08  # NTF_PROXY: the proxy entries' table
            nl.seq += 1
            m["header"].update({"type": RTM_GETNEIGH, "flags": 1 | NLM_F_DUMP, "sequence_number": nl.seq})
            m.encode()
            nl.sock.sendall(m.data)
            done = False
            while not done:
                for seq, msg_type, body in nl._messages():
                    if seq != nl.seq:
                        continue
                    if msg_type == NLMSG_DONE:
                        done = True
                        break
                    if msg_type == NLMSG_ERROR:
                        raise OSError(_error(body), os.strerror(_error(body)))
                    if msg_type != RTM_NEWNEIGH:
                        continue
                    n = ndmsg(_HDR.pack(_HDR.size + len(body), msg_type, 0, seq, 0) + body)
                    n.decode()
                    ifindex = n["ifindex"]
                    if ifindex not in names:
                        with netns.entered(path):
                            names[ifindex] = socket.if_indextoname(ifindex)
                    state = n["state"]
                    out.append(Neighbour(n.get_attr("NDA_DST"), names[ifindex], n.get_attr("NDA_LLADDR"),
                                         NUD_NAMES.get(state, str(state)), proxy))
    finally:
        nl.close()
    return out
