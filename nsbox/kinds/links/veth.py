"""veth: a pair of linked interfaces, usually one end in each of two namespaces
(a container's eth0 and its host end). Made by `lab.veth(...)` (or
`lab.link("veth", node, name, peer=(other, peer_name), master=BRIDGE)`).

The pair is created from the side in NODE (where the bridge usually is, so it
can be enslaved in the same request) with the peer made straight inside the
other namespace (VETH_INFO_PEER carrying IFLA_NET_NS_FD): the peer's name only
has to be free there. Each end has its own link options (nsbox/model/linkopts.py),
sent in its part of the one request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.errors import ValidationError
from nsbox.kinds.links import LinkKind, no_extra, register


@dataclass(frozen=True)
class Options:
    peer: tuple[str, str] | None = None   # (node, interface) of the other end
    master: str | None = None             # bridge this end is enslaved to
    mtu: int | None = None                # both ends


def options(raw: dict[str, Any]) -> Options:
    no_extra("veth", raw, {"peer", "master", "mtu"})
    o = Options(**raw)
    if not (isinstance(o.peer, (tuple, list)) and len(o.peer) == 2):
        raise ValidationError("veth needs peer=(node, interface)")
    return o


KIND = register(LinkKind(
    name="veth", options=options,
    ip_args=lambda o: f"peer name {o.peer[1]} netns {o.peer[0]}",
    info_data=lambda o, ctx: [],  # the request is rtnl.veth(): the peer is a nested ifinfmsg
    probe={"peer": "nsbprobe9"}, builder="veth",
))
