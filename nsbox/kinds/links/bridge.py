"""bridge: a software switch (docker0, cni0, a LAN). Made by `node.bridge(...)` (or
`lab.link("bridge", node, name, ...)`), before the ports enslaved to it.

Options: stp (stp_state: ports then wait 2 x forward_delay, listening and
learning, before they forward), vlan_filtering (a VLAN-aware bridge; a kernel
built without CONFIG_BRIDGE_VLAN_FILTERING refuses it, so it is a feature of its
own, "vlan_filtering", that a lab must require). Link options (fixed MAC, MTU,
txqueuelen, admin state) and port options (hairpin, isolated) are in
nsbox/model/linkopts.py, shared with every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.errors import ValidationError
from nsbox.kinds.links import LinkKind, no_extra, register


@dataclass(frozen=True)
class Options:
    stp: bool | None = None
    vlan_filtering: bool | None = None


def options(raw: dict[str, Any]) -> Options:
    no_extra("bridge", raw, {"stp", "vlan_filtering"})
    o = Options(**raw)
    for key in ("stp", "vlan_filtering"):
        v = getattr(o, key)
        if v is not None and type(v) is not bool:
            raise ValidationError(f"bridge {key} must be True or False, got {v!r}")
    return o


def ip_args(o: Options) -> str:
    """`stp_state 1 vlan_filtering 1`, after `type bridge`."""
    words = []
    if o.stp is not None:
        words.append(f"stp_state {int(o.stp)}")
    if o.vlan_filtering is not None:
        words.append(f"vlan_filtering {int(o.vlan_filtering)}")
    return " ".join(words)


def info_data(o: Options, ctx: Any = None) -> list:
    data: list = []
    if o.stp is not None:
        data.append(("IFLA_BR_STP_STATE", int(o.stp)))
    if o.vlan_filtering is not None:
        data.append(("IFLA_BR_VLAN_FILTERING", int(o.vlan_filtering)))
    return data


KIND = register(LinkKind(
    name="bridge", options=options, ip_args=ip_args, info_data=info_data, probe={}, builder="bridge",
))
