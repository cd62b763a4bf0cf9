"""Links, addresses, routes, rules, neighbour and FDB entries in one namespace, as `ip` would make them.

Each method queues one request on the node's batched rtnetlink socket
(host/rtnl.py); the batch goes out when an index is needed or the block ends.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from nsbox.host.rtnl import Rtnl
from nsbox.wire import routing, rtnl
from nsbox.wire.rtnl import RTM_NEWLINK, RTM_NEWADDR, NLM_F_ACK, NLM_F_REQUEST
from nsbox.model.lab import Fdb, Neigh, PolicyRule, Route


class NodeLinks:
    """rtnetlink operations inside one node's namespace."""

    def __init__(self, node: str, nl: Rtnl) -> None:
        self.node = node
        self.nl = nl
        # The loopback device is registered first in every netns: always ifindex 1.
        self._index: dict[str, int] = {"lo": 1}

    def resolve(self, names: list[str]) -> None:
        """Look up the ifindex of NAMES (sending what is queued first)."""
        missing = [n for n in names if n not in self._index]
        if missing:
            self._index.update(self.nl.indexes(missing))

    def index(self, ifname: str) -> int:
        self.resolve([ifname])
        return self._index[ifname]

    def add_bridge(self, name: str, mtu: int | None) -> None:
        self.nl.queue(f"ip link add {name} type bridge", rtnl.bridge(name, mtu), RTM_NEWLINK)

    def add_veth(self, name: str, peer_name: str, peer_netns_fd: int, peer_node: str,
                 master: str | None, mtu: int | None) -> None:
        """Create NAME here (up, in MASTER) and PEER_NAME directly inside the peer namespace."""
        text = f"ip link add {name} type veth peer name {peer_name} netns {peer_node}"
        if master:
            text += f"; ip link set {name} master {master} up"
        self.nl.queue(text, rtnl.veth(name, peer_name, peer_netns_fd, self.index(master) if master else None, mtu),
                      RTM_NEWLINK)

    def up(self, ifname: str) -> None:
        self.nl.queue(f"ip link set {ifname} up", rtnl.link_up(self.index(ifname)), RTM_NEWLINK,
                      NLM_F_REQUEST | NLM_F_ACK)

    def add_address(self, ifname: str, cidr: str) -> None:
        self.nl.queue(f"ip addr add {cidr} dev {ifname}", rtnl.address(self.index(ifname), cidr), RTM_NEWADDR)

    def add_route(self, route: Route) -> None:
        self.add(route)

    def add(self, obj: Route | PolicyRule | Neigh | Fdb) -> None:
        """`ip route add …`, `ip rule add …`, `ip neigh add …` or `bridge fdb add …`."""
        self.nl.queue(routing.ip_text(obj), routing.encode(obj, self.index), routing.msg_type(obj))


@contextmanager
def in_node(node: str, path: str) -> Iterator[NodeLinks]:
    """A batch of link operations inside the namespace at PATH, sent when the block ends."""
    nl = Rtnl(node, path)
    try:
        links = NodeLinks(node, nl)
        yield links
        nl.flush()
    finally:
        nl.close()
