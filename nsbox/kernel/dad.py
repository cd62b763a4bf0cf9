"""IPv6 duplicate address detection (DAD): which addresses are still tentative.

A freshly added IPv6 address is tentative until DAD has sent its neighbour
solicitation and heard no answer (about a second here: one probe,
RetransTimer 1 s); meanwhile the kernel refuses to bind it or use it as a source,
so first probes fail. Addresses nsbox adds with IFA_F_NODAD (the default, as
moby's libnetwork adds container and bridge IPv6 addresses) skip it; for those a
recipe adds with dad=True, realize waits here until none is tentative.
"""

from __future__ import annotations

import os
import socket
import struct

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETADDR
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from nsbox import retry
from nsbox.errors import KernelError
from nsbox.host import netns

IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
_HDR = struct.Struct("=IHHII")
NLMSG_ERROR, NLMSG_DONE = 2, 3


def ipv6_addresses(path: str) -> list[tuple[str, int]]:
    """Every IPv6 address in the netns at PATH with its flags (IFA_FLAGS, 32 bits,
    else the header's 8), read with an RTM_GETADDR dump: what `ip -6 addr` shows."""
    sock = netns.socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        req = ifaddrmsg()
        req["family"] = socket.AF_INET6
        req["header"]["type"] = RTM_GETADDR
        req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        req["header"]["sequence_number"] = 1
        req.encode()
        sock.sendall(req.data)
        out = []
        while True:
            data = sock.recv(1 << 20)
            off = 0
            while off + _HDR.size <= len(data):
                length, msg_type = _HDR.unpack_from(data, off)[:2]
                if msg_type == NLMSG_DONE:
                    return out
                if msg_type == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + _HDR.size)[0]
                    if err:
                        raise KernelError(f"address dump: {os.strerror(err)}")
                    return out
                msg = ifaddrmsg(data[off:off + length])
                msg.decode()
                flags = msg.get_attr("IFA_FLAGS")
                out.append((str(msg.get_attr("IFA_ADDRESS")), flags if flags is not None else msg["flags"]))
                off += (length + 3) & ~3
    finally:
        sock.close()


def tentative(path: str, only: set[str] | None = None) -> list[str]:
    """The IPv6 addresses still in DAD in the netns at PATH (of ONLY, if given)."""
    return [ip for ip, flags in ipv6_addresses(path)
            if flags & IFA_F_TENTATIVE and not flags & IFA_F_DADFAILED and (only is None or ip in only)]


def wait(path: str, node: str, addresses: set[str], timeout: float = 5.0) -> float:
    """Wait until none of ADDRESSES is tentative; seconds waited. A duplicate found
    (dadfailed: another node holds the address) or DAD still running at TIMEOUT is an error."""
    def tentative_now() -> list[str]:
        flags = {ip: f for ip, f in ipv6_addresses(path) if ip in addresses}
        failed = [ip for ip, f in flags.items() if f & IFA_F_DADFAILED]
        if failed:
            raise KernelError(f"{node}: duplicate address detection failed for {', '.join(failed)} "
                              f"(another node on the link holds it)")
        return [ip for ip, f in flags.items() if f & IFA_F_TENTATIVE]

    tried = retry.until(tentative_now, lambda busy: not busy, within=timeout, every=0.05)
    if not tried.ok:
        raise KernelError(f"{node}: {', '.join(tried.value)} still tentative after {timeout:.0f} s "
                          f"(duplicate address detection never finished: is the link up?)")
    return tried.seconds
