"""Batched rtnetlink: one plain netlink socket per namespace, requests sent together.

pyroute2 0.9's IPRoute runs an asyncio loop round per request (~1 ms of Python
per call, measured by bench/bench_bridge.py), which dominated lab bring-up.
Here pyroute2's message classes still encode every request (nsbox/wire/rtnl.py
builds them), but the requests for a node go out in one sendmsg and their acks
are matched back by sequence number, so an error names the exact step that failed.
It is the channel into a namespace that effects, observers and feature probes share.
"""

from __future__ import annotations

import os
import socket
import struct

from pyroute2.netlink import NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from nsbox.errors import KernelError
from nsbox.host import netns
from nsbox.wire.rtnl import CREATE as _CREATE

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
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
