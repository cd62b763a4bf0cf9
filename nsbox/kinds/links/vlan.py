"""vlan (802.1Q): a child tagging its frames with ID on the parent (module 8021q)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.errors import ValidationError
from nsbox.kinds.links import LinkKind, no_extra, register


@dataclass(frozen=True)
class Options:
    id: int = 0


def options(raw: dict[str, Any]) -> Options:
    no_extra("vlan", raw, {"id"})
    o = Options(**raw)
    if not isinstance(o.id, int) or not 1 <= o.id <= 4094:
        raise ValidationError(f"vlan id {o.id!r} out of range 1-4094")
    return o


KIND = register(LinkKind(
    name="vlan", options=options, needs_parent=True,
    ip_args=lambda o: f"id {o.id}",
    info_data=lambda o, ctx: [("IFLA_VLAN_ID", o.id)],
    probe={"vlan_id": 50},
))
