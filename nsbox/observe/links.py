"""Links as the kernel holds them, read back."""

from __future__ import annotations

import os

from pyroute2.netlink import NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nsbox.errors import KernelError
from nsbox.host.rtnl import _HDR, RTEXT_FILTER_SKIP_STATS, Rtnl, _error


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
