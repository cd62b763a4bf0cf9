"""ipvlan: children sharing the parent's MAC; l2 switches by MAC, l3 routes by IP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.kinds.links import LinkKind, known, no_extra, register

MODES = {"l2": 0, "l3": 1}  # IFLA_IPVLAN_MODE


@dataclass(frozen=True)
class Options:
    mode: str = "l2"


def options(raw: dict[str, Any]) -> Options:
    no_extra("ipvlan", raw, {"mode"})
    o = Options(**raw)
    known(o.mode, MODES, "ipvlan mode")
    return o


KIND = register(LinkKind(
    name="ipvlan", options=options, needs_parent=True,
    ip_args=lambda o: f"mode {o.mode}",
    info_data=lambda o, ctx: [("IFLA_IPVLAN_MODE", MODES[o.mode])],
    probe={"ipvlan_mode": 0},
))
