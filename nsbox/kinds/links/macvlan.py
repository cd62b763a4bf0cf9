"""macvlan: a child with its own MAC on a parent device (Docker's macvlan driver).

Modes: bridge (children talk to each other through the parent), private,
vepa (via the external switch), passthru (one child takes the parent over).
Fact on this kernel: with the parent a veth into a LAN bridge, child<->child and
LAN<->child work, the parent's own namespace cannot reach its children.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.kinds.links import LinkKind, known, no_extra, register

MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}  # IFLA_MACVLAN_MODE


@dataclass(frozen=True)
class Options:
    mode: str = "bridge"


def options(raw: dict[str, Any]) -> Options:
    no_extra("macvlan", raw, {"mode"})
    o = Options(**raw)
    known(o.mode, MODES, "macvlan mode")
    return o


KIND = register(LinkKind(
    name="macvlan", options=options, needs_parent=True,
    ip_args=lambda o: f"mode {o.mode}",
    info_data=lambda o, ctx: [("IFLA_MACVLAN_MODE", MODES[o.mode])],
    probe={"macvlan_mode": "bridge"},
))
