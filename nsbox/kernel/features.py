"""Which kernel features this machine has, probed for real in a scratch netns.

A recipe declares what it needs (`lab.require("vxlan")`); a missing feature
makes the recipe SKIP with the reason instead of failing mid-build.

Two kinds of "no" are kept apart. The kernel refusing (netlink answers
EOPNOTSUPP for an unknown link kind, libiptc cannot open the nat table) means
the feature is missing: a SKIP. A library that does not load (pyroute2 not
installed, python-iptables not finding libxtables) is a broken installation:
InstallError, exit 2, never a SKIP, because no kernel would make it run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Literal

from nsbox.errors import REINSTALL, InstallError, missing_module
from nsbox.kernel import netns
from nsbox.kinds import links as _link_kinds
from nsbox.model.lab import FEATURES

Probe = Callable[[Any], None]  # gets an IPRoute inside the scratch namespace
State = Literal["present", "missing", "broken"]


@dataclass(frozen=True)
class Status:
    feature: str
    state: State
    reason: str = ""  # why it is missing or broken; empty when present


def _pyroute2() -> tuple[Any, type[Exception]]:
    """(IPRoute, NetlinkError), imported late so a missing pyroute2 is an InstallError."""
    try:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as e:
        raise (missing_module(e) or InstallError(f"pyroute2 does not load ({e}); {REINSTALL}")) from None
    return IPRoute, NetlinkError


def _link(kind: str, **kw) -> Probe:
    def probe(ipr) -> None:
        ipr.link("add", ifname="nsbprobe0", kind=kind, **kw)
        ipr.link("del", ifname="nsbprobe0")
    return probe


def _child(kind: str, **kw) -> Probe:
    """A link that needs a parent device (macvlan, ipvlan, vlan): a bridge serves."""
    def probe(ipr) -> None:
        ipr.link("add", ifname="nsbprobe1", kind="bridge")
        try:
            _link(kind, link=ipr.link_lookup(ifname="nsbprobe1")[0], **kw)(ipr)
        finally:
            ipr.link("del", ifname="nsbprobe1")
    return probe


def _iptables_nat(ipr) -> None:
    from nsbox.kernel.iptables import _iptc
    iptc = _iptc()  # InstallError if libxtables does not load: not the kernel's fault
    try:
        iptc.Table("nat").refresh()
    except iptc.IPTCError as e:
        raise KernelRefused(str(e)) from None


def _nftables(ipr) -> None:
    from nsbox.kernel.nftables import probe
    why = probe()
    if why:
        raise KernelRefused(why)


def _proc(path: str) -> Probe:
    def probe(ipr) -> None:
        if not os.path.exists(path):
            raise KernelRefused(f"no {path}")
    return probe


class KernelRefused(Exception):
    """A probe's own way of saying the kernel does not offer the feature."""


PROBES: dict[str, Probe] = {
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
    "nftables": _nftables,
    # CONFIG_BRIDGE_VLAN_FILTERING: without it the kernel refuses `vlan_filtering 1` (EOPNOTSUPP)
    "vlan_filtering": _link("bridge", br_vlan_filtering=1),
}
# Link kinds bring their own probe (nsbox/kinds/links/, veth and bridge included):
# a new kind needs no line here.
for _k in _link_kinds.KINDS.values():
    if _k.probe is not None:
        PROBES[_k.name] = (_child if _k.needs_parent else _link)(_k.name, **_k.probe)
assert set(PROBES) == set(FEATURES), "every feature a recipe may require has a probe"


def missing(required: frozenset[str]) -> dict[str, str]:
    """Feature -> reason, for each required feature this kernel lacks.

    Raises InstallError if a probe could not run because nsbox's own libraries are broken."""
    out = {}
    for f in sorted(required):
        st = status(f)
        if st.state == "broken":
            raise InstallError(st.reason)
        if st.state == "missing":
            out[f] = st.reason
    return out


@lru_cache(maxsize=None)
def status(feature: str) -> Status:
    """Probe FEATURE once per process. Must run with CAP_NET_ADMIN (root, or in a user namespace)."""
    probe = PROBES.get(feature)
    if probe is None:
        return Status(feature, "missing", f"unknown feature {feature!r}")
    try:
        IPRoute, NetlinkError = _pyroute2()
    except InstallError as e:
        return Status(feature, "broken", str(e))
    try:
        with netns.scratch():
            ipr = IPRoute()
            try:
                probe(ipr)
            finally:
                ipr.close()
    except InstallError as e:
        return Status(feature, "broken", str(e))
    except (KernelRefused, NetlinkError, OSError) as e:  # the kernel said no
        return Status(feature, "missing", f"this kernel lacks {feature} ({_reason(e)})")
    return Status(feature, "present")


def _reason(e: BaseException) -> str:
    # NetlinkError(code, message) and OSError(errno, strerror): the message is the kernel's word
    if len(e.args) > 1:
        return str(e.args[1])
    return str(e) or type(e).__name__
