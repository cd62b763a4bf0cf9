"""Links, addresses and routes in one namespace, over one rtnetlink socket.

The socket is opened while the thread is inside the namespace (~1 ms), so no
helper process or thread is started per call, and it stays bound there.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nsbox.errors import KernelError
from nsbox.kernel import netns


class NodeLinks:
    """rtnetlink operations inside one node's namespace."""

    def __init__(self, node: str, ipr: IPRoute) -> None:
        self.node = node
        self.ipr = ipr
        # The loopback device is registered first in every netns: always ifindex 1.
        self._index: dict[str, int] = {"lo": 1}

    def index(self, ifname: str) -> int:
        if ifname not in self._index:
            found = self.ipr.link_lookup(ifname=ifname)
            if not found:
                raise KernelError(f"{self.node}: no interface {ifname}")
            self._index[ifname] = found[0]
        return self._index[ifname]

    def add_bridge(self, name: str, mtu: int | None) -> None:
        kw = {"mtu": mtu} if mtu else {}
        self._do(f"ip link add {name} type bridge", "link", "add", ifname=name, kind="bridge", **kw)

    def add_veth(self, name: str, peer_name: str, peer_netns_fd: int, peer_node: str,
                 master: str | None, mtu: int | None) -> None:
        """Create NAME here and PEER_NAME directly inside the peer namespace."""
        peer: dict = {"ifname": peer_name, "net_ns_fd": peer_netns_fd}
        kw: dict = {}
        if mtu:
            kw["mtu"] = peer["mtu"] = mtu
        if master:
            kw["master"] = self.index(master)
        self._do(f"ip link add {name} type veth peer name {peer_name} netns {peer_node}",
                 "link", "add", ifname=name, kind="veth", peer=peer, state="up", **kw)

    def up(self, ifname: str) -> None:
        self._do(f"ip link set {ifname} up", "link", "set", index=self.index(ifname), state="up")

    def add_address(self, ifname: str, cidr: str) -> None:
        ip, plen = cidr.split("/")
        self._do(f"ip addr add {cidr} dev {ifname}", "addr", "add",
                 index=self.index(ifname), address=ip, prefixlen=int(plen))

    def add_route(self, dst: str, via: str | None, dev: str | None) -> None:
        family6 = ":" in (via or dst)
        kw: dict = {"dst": ("::/0" if family6 else "0.0.0.0/0") if dst == "default" else dst}
        if via:
            kw["gateway"] = via
        if dev:
            kw["oif"] = self.index(dev)
        text = f"ip route add {dst}" + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
        self._do(text, "route", "add", **kw)

    def _do(self, text: str, obj: str, cmd: str, **kw) -> None:
        try:
            getattr(self.ipr, obj)(cmd, **kw)
        except NetlinkError as e:
            raise KernelError(f"{self.node}: {text}: {e.args[1] if len(e.args) > 1 else e}") from None


@contextmanager
def in_node(node: str, path: str) -> Iterator[NodeLinks]:
    """Open an rtnetlink socket inside the namespace at PATH."""
    with netns.entered(path):
        ipr = IPRoute()
    try:
        yield NodeLinks(node, ipr)
    finally:
        ipr.close()
