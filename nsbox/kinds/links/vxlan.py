"""vxlan: an L2 overlay over UDP (flannel, Calico VXLAN, Docker overlay networks).

vni: the network identifier; port: the UDP port (4789 is IANA's; the kernel's
default 8472 is Linux's old one, so it is always set); local: the source
address; remote: the one peer (else FDB entries or learning find peers); dev:
the underlay device in the same node; learning: learn remote MACs from traffic.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any

from nsbox.errors import ValidationError
from nsbox.kinds.links import LinkKind, no_extra, register


@dataclass(frozen=True)
class Options:
    vni: int = 0
    port: int = 4789
    local: str | None = None
    remote: str | None = None
    dev: str | None = None
    learning: bool = True


def options(raw: dict[str, Any]) -> Options:
    no_extra("vxlan", raw, {"vni", "port", "local", "remote", "dev", "learning"})
    o = Options(**raw)
    if not isinstance(o.vni, int) or not 0 <= o.vni < 1 << 24:
        raise ValidationError(f"vxlan vni {o.vni!r} out of range 0-16777215")
    if not isinstance(o.port, int) or not 1 <= o.port <= 65535:
        raise ValidationError(f"vxlan port {o.port!r} out of range 1-65535")
    for what in ("local", "remote"):
        v = getattr(o, what)
        if v is not None:
            try:
                if ipaddress.ip_address(v).version != 4:
                    raise ValueError
            except ValueError:
                raise ValidationError(f"vxlan {what} {v!r} is not an IPv4 address") from None
    if not isinstance(o.learning, bool):
        raise ValidationError("vxlan learning must be True or False")
    return o


def ip_args(o: Options) -> str:
    out = f"id {o.vni} dstport {o.port}"
    out += f" local {o.local}" if o.local else ""
    out += f" remote {o.remote}" if o.remote else ""
    out += f" dev {shlex.quote(o.dev)}" if o.dev else ""  # a shell word (`nsbox explain`)
    return out + ("" if o.learning else " nolearning")


def info_data(o: Options, ctx) -> list:
    attrs: list = [("IFLA_VXLAN_ID", o.vni), ("IFLA_VXLAN_PORT", o.port),
                   ("IFLA_VXLAN_LEARNING", int(o.learning))]
    if o.local:
        attrs.append(("IFLA_VXLAN_LOCAL", o.local))
    if o.remote:
        attrs.append(("IFLA_VXLAN_GROUP", o.remote))
    if o.dev:
        attrs.append(("IFLA_VXLAN_LINK", ctx.index(o.dev)))
    return attrs


KIND = register(LinkKind(name="vxlan", options=options, ip_args=ip_args, info_data=info_data,
                         depends=lambda o: (o.dev,) if o.dev else (),
                         probe={"vxlan_id": 42, "vxlan_port": 4789}))
