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

from nsbox.kernel import netns

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

    from nsbox.kernel.rtnl import NLMSG_ERROR, Rtnl, _error, _HDR

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
