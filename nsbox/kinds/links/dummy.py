"""dummy: a device that drops what it is sent; holds addresses (node-local IPs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nsbox.kinds.links import LinkKind, no_extra, register


@dataclass(frozen=True)
class Options:
    pass


def options(raw: dict[str, Any]) -> Options:
    no_extra("dummy", raw, set())
    return Options()


KIND = register(LinkKind(name="dummy", options=options, ip_args=lambda o: "", info_data=lambda o, ctx: [],
                         probe={}))
