"""Which kernel features this machine has, probed for real in a scratch netns.

A recipe declares what it needs (`lab.require("vxlan")`); a missing feature
makes the recipe SKIP with the reason instead of failing mid-build.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable

from pyroute2 import IPRoute

from nsbox.kernel import netns
from nsbox.model.lab import FEATURES


def _link(kind: str, **kw) -> Callable[[IPRoute], None]:
    def probe(ipr: IPRoute) -> None:
        ipr.link("add", ifname="nsbprobe0", kind=kind, **kw)
        ipr.link("del", ifname="nsbprobe0")
    return probe


def _child(kind: str, **kw) -> Callable[[IPRoute], None]:
    """A link that needs a parent device (macvlan, ipvlan, vlan): a bridge serves."""
    def probe(ipr: IPRoute) -> None:
        ipr.link("add", ifname="nsbprobe1", kind="bridge")
        try:
            _link(kind, link=ipr.link_lookup(ifname="nsbprobe1")[0], **kw)(ipr)
        finally:
            ipr.link("del", ifname="nsbprobe1")
    return probe


def _iptables_nat(ipr: IPRoute) -> None:
    from nsbox.kernel.iptables import _iptc
    t = _iptc().Table("nat")
    t.refresh()


def _proc(path: str) -> Callable[[IPRoute], None]:
    def probe(ipr: IPRoute) -> None:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
    return probe


PROBES: dict[str, Callable[[IPRoute], None]] = {
    "veth": _link("veth", peer="nsbprobe9"),
    "bridge": _link("bridge"),
    "macvlan": _child("macvlan", macvlan_mode="bridge"),
    "ipvlan": _child("ipvlan", ipvlan_mode=0),
    "vlan": _child("vlan", vlan_id=50),
    "dummy": _link("dummy"),
    "vxlan": _link("vxlan", vxlan_id=42, vxlan_port=4789),
    "geneve": _link("geneve", geneve_id=42, geneve_remote="192.0.2.1"),
    "wireguard": _link("wireguard"),
    "nat": _iptables_nat,
    "conntrack": _proc("/proc/sys/net/netfilter/nf_conntrack_max"),
    "ipv6": _proc("/proc/sys/net/ipv6/conf/lo/disable_ipv6"),
}
assert set(PROBES) == set(FEATURES), "every feature a recipe may require has a probe"


def missing(required: frozenset[str]) -> dict[str, str]:
    """Feature -> reason, for each required feature this kernel lacks."""
    return {f: r for f in sorted(required) if (r := _probe(f)) is not None}


@lru_cache(maxsize=None)
def _probe(feature: str) -> str | None:
    probe = PROBES.get(feature)
    if probe is None:
        return f"unknown feature {feature!r}"
    try:
        with netns.scratch():
            ipr = IPRoute()
            try:
                probe(ipr)
            finally:
                ipr.close()
        return None
    except Exception as e:  # whatever the kernel or library says is the reason
        detail = e.args[1] if isinstance(e.args, tuple) and len(e.args) > 1 else e
        return f"this kernel lacks {feature} ({detail})"
