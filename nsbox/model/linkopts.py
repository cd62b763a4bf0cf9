"""Link options any interface may carry (fixed MAC, MTU, txqueuelen, admin state),
bridge options (STP, vlan_filtering) and bridge-port options (hairpin, isolated):
their validation and their `ip` words.

Validation refuses, in one line and before anything is built, what the kernel
would refuse: a multicast or all-zero MAC (EADDRNOTAVAIL), an MTU out of 68-65535,
a txqueuelen beyond 32 bits (ERANGE), port options on an interface in no bridge.
The same function runs in the recipe jail (builder) and again on the trusted side
(nsbox/validate.py), since the lab crosses over as JSON.
"""

from __future__ import annotations

import re

from nsbox.errors import ValidationError

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")  # RFC 2863, IF_OPER_*


def check(node: str, iface) -> None:  # iface: nsbox.model.lab.Interface
    where = f"node {node}: {iface.name}"
    if iface.mac is not None:
        if not isinstance(iface.mac, str) or not _MAC_RE.match(iface.mac.lower()):
            raise ValidationError(f"{where}: bad MAC {iface.mac!r} (six hex pairs, e.g. 02:42:ac:11:00:01)")
        first = int(iface.mac[:2], 16)
        if first & 1 or iface.mac.lower() == "00:00:00:00:00:00":
            raise ValidationError(f"{where}: MAC {iface.mac} is multicast or zero; the kernel refuses it")
        if iface.kind == "lo":
            raise ValidationError(f"{where}: the loopback device takes no MAC")
    for key in ("mtu", "txqueuelen"):
        v = getattr(iface, key)
        if v is not None and (type(v) is not int):
            raise ValidationError(f"{where}: {key} must be an integer, got {v!r}")
    if iface.mtu is not None and not 68 <= iface.mtu <= 65535:
        raise ValidationError(f"{where}: MTU {iface.mtu} out of range 68-65535")
    if iface.txqueuelen is not None and not 0 <= iface.txqueuelen <= 0xFFFFFFFF:
        raise ValidationError(f"{where}: txqueuelen {iface.txqueuelen} out of range 0-4294967295")
    for key in ("up", "stp", "vlan_filtering", "hairpin", "isolated"):
        v = getattr(iface, key)
        if v is not None and type(v) is not bool:
            raise ValidationError(f"{where}: {key} must be True or False, got {v!r}")
    if iface.kind != "bridge" and (iface.stp is not None or iface.vlan_filtering is not None):
        raise ValidationError(f"{where}: stp and vlan_filtering are bridge options ({iface.name} is a {iface.kind})")
    if iface.master is None and (iface.hairpin is not None or iface.isolated is not None):
        raise ValidationError(f"{where}: hairpin and isolated are bridge-port options; {iface.name} is in no bridge")


def link_words(iface) -> str:
    """`address MAC mtu N txqueuelen N` for `ip link add` (empty when all default)."""
    out = ""
    if iface.mac:
        out += f" address {iface.mac}"
    if iface.mtu:
        out += f" mtu {iface.mtu}"
    if iface.txqueuelen is not None:
        out += f" txqueuelen {iface.txqueuelen}"
    return out


def link_attrs(iface) -> list:
    """The IFLA_* attributes of link_words, for an RTM_NEWLINK request."""
    attrs: list = []
    if iface.mac:
        attrs.append(("IFLA_ADDRESS", iface.mac.lower()))
    if iface.mtu:
        attrs.append(("IFLA_MTU", iface.mtu))
    if iface.txqueuelen is not None:
        attrs.append(("IFLA_TXQLEN", iface.txqueuelen))
    return attrs


def bridge_words(iface) -> str:
    """` stp_state 1 vlan_filtering 1` after `type bridge` (nsbox/kinds/links/bridge.py)."""
    from nsbox.kinds.links import bridge
    args = bridge.ip_args(bridge.Options(iface.stp, iface.vlan_filtering))
    return f" {args}" if args else ""


def bridge_data(iface) -> list:
    from nsbox.kinds.links import bridge
    return bridge.info_data(bridge.Options(iface.stp, iface.vlan_filtering))


def port_words(iface) -> str:
    """`hairpin on isolated off` for `ip link set IFACE type bridge_slave …` (empty: none set)."""
    out = ""
    for key in ("hairpin", "isolated"):
        v = getattr(iface, key)
        if v is not None:
            out += f" {key} {'on' if v else 'off'}"
    return out.strip()


def port_data(iface) -> list:
    data: list = []
    if iface.hairpin is not None:
        data.append(("IFLA_BRPORT_MODE", int(iface.hairpin)))
    if iface.isolated is not None:
        data.append(("IFLA_BRPORT_ISOLATED", int(iface.isolated)))
    return data
