"""Which kernel features this machine has, probed for real in a scratch netns.

A recipe declares what it needs (`lab.require("vxlan")`); a missing feature
makes the recipe SKIP with the reason instead of failing mid-build.

Two kinds of "no" are kept apart. The kernel refusing (netlink answers
EOPNOTSUPP for an unknown link kind, nf_tables has no nat chain type) means
the feature is missing: a SKIP. A library or tool that does not load (pyroute2
not installed, no iptables-legacy-save) is a broken installation: InstallError,
exit 2, never a SKIP, because no kernel would make it run.

NAT is probed in the backend the rules will go to (kernel/firewall.py): nf_tables
asked in-process over netlink for a nat chain, or the legacy nat table opened by
iptables-legacy-save. python-iptables is not involved: it reads the legacy table
only, and importing it costs a run ~0.4 s (it runs ldconfig and gcc to find
libxtables).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Callable, Literal

from nsbox.errors import REINSTALL, InstallError, missing_module
from nsbox.host import netns
from nsbox.kinds import links as _link_kinds
from nsbox.kinds import protocols as _protocols
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


def _own(kind: str) -> Probe:
    """veth and bridge: the very request realize sends (host/rtnl.py), in-process and
    without pyroute2's IPRoute (an asyncio round per call: ~10 ms each at start-up)."""
    def probe(_ipr) -> None:
        from nsbox.errors import KernelError
        from nsbox.host.rtnl import Rtnl
        from nsbox.wire import rtnl

        r = Rtnl("probe", "/proc/thread-self/ns/net")
        try:
            if kind == "bridge":
                msg = rtnl.bridge("nsbprobe0", None)
            else:
                fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    msg = rtnl.veth("nsbprobe0", "nsbprobe9", fd, None, None, up=False)
                    r.queue(f"ip link add nsbprobe0 type {kind}", msg, rtnl.RTM_NEWLINK)
                    r.flush()
                    return
                finally:
                    os.close(fd)
            r.queue(f"ip link add nsbprobe0 type {kind}", msg, rtnl.RTM_NEWLINK)
            r.flush()
        except KernelError as e:
            raise KernelRefused(str(e).split(": ")[-1]) from None
        finally:
            r.close()
    probe.own_netlink = True  # type: ignore[attr-defined]
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


def _iptables_nat(ipr, flavour: str = "auto") -> None:
    """The nat table of the backend FLAVOUR resolves to (kernel/firewall.py)."""
    from nsbox.host import programs as iptables

    if iptables.resolve_flavour(flavour) == "nft":
        _nft_nat_chain()
        return
    import subprocess

    prog = iptables.program(4, "legacy", "save")  # InstallError when missing: not the kernel's fault
    done = subprocess.run([prog, "-t", "nat"], capture_output=True, text=True, check=False,
                          env=iptables.tool_env())
    if done.returncode != 0:
        raise KernelRefused(" ".join(done.stderr.split()) or f"{prog} -t nat: exit {done.returncode}")


# nf_tables over netlink (linux/netfilter/nf_tables.h, nfnetlink.h): just enough to ask
# for what iptables-nft's nat table is made of, a base chain of type nat.
_NETLINK_NETFILTER, _NFNL_SUBSYS_NFTABLES = 12, 10
_NFNL_MSG_BATCH_BEGIN, _NFNL_MSG_BATCH_END = 0x10, 0x11
_NFT_MSG_NEWTABLE, _NFT_MSG_NEWCHAIN = 0, 3
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_CREATE = 1, 4, 0x400
_NLMSG_ERROR, _NLA_F_NESTED = 2, 0x8000
_NFPROTO_IPV4, _NF_INET_POST_ROUTING = 2, 4


def _nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _nfmsg(kind: int, flags: int, seq: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
    body = struct.pack("=BB", family, 0) + struct.pack("!H", res_id) + attrs  # nfgenmsg: res_id is big-endian
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _nft_nat_chain() -> None:
    """`nft add table ip T; nft add chain ip T c { type nat hook postrouting priority 100; }` in
    this (scratch) netns, sent in-process; KernelRefused with the kernel's errno if refused."""
    import socket

    sub = _NFNL_SUBSYS_NFTABLES << 8
    table = _nla(1, b"nsbprobe\0")  # NFTA_TABLE_NAME
    hook = _nla(1, struct.pack("!I", _NF_INET_POST_ROUTING)) + _nla(2, struct.pack("!i", 100))
    chain = (_nla(1, b"nsbprobe\0") + _nla(3, b"nat\0")  # NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
             + _nla(4 | _NLA_F_NESTED, hook) + _nla(7, b"nat\0"))  # NFTA_CHAIN_HOOK, NFTA_CHAIN_TYPE
    ack = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE
    batch = (_nfmsg(_NFNL_MSG_BATCH_BEGIN, _NLM_F_REQUEST, 1, 0, b"", _NFNL_SUBSYS_NFTABLES)
             + _nfmsg(sub | _NFT_MSG_NEWTABLE, ack, 2, _NFPROTO_IPV4, table)
             + _nfmsg(sub | _NFT_MSG_NEWCHAIN, ack, 3, _NFPROTO_IPV4, chain)
             + _nfmsg(_NFNL_MSG_BATCH_END, _NLM_F_REQUEST, 4, 0, b"", _NFNL_SUBSYS_NFTABLES))
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    except OSError as e:
        raise KernelRefused(f"no nfnetlink: {e.strerror}") from None
    with s:
        s.settimeout(5)
        s.bind((0, 0))
        s.send(batch)
        pending = {2: "table", 3: "nat chain"}
        while pending:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if kind == _NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    what = pending.pop(seq, None)
                    if err and what is None:
                        raise KernelRefused(f"nf_tables refused the batch: {os.strerror(-err)}")
                    if err:
                        raise KernelRefused(f"nf_tables refused a {what}: {os.strerror(-err)}")
                off += max(length + (-length % 4), 16)


def _nftables(ipr) -> None:
    from nsbox.host.programs import nft_probe as probe
    why = probe()
    if why:
        raise KernelRefused(why)


_nftables.own_netlink = True  # type: ignore[attr-defined]


def _ipset(ipr) -> None:
    from nsbox.host.programs import ipset_probe
    why = ipset_probe()
    if why:
        raise KernelRefused(why)


_ipset.own_netlink = True  # type: ignore[attr-defined]


def _proc(path: str) -> Probe:
    def probe(ipr) -> None:
        if not os.path.exists(path):
            raise KernelRefused(f"no {path}")
    probe.own_netlink = True  # type: ignore[attr-defined]  (needs no IPRoute)
    return probe


def _protocol_feature(feature) -> Probe:
    def probe(_ipr) -> None:
        feature()  # OSError (EPROTONOSUPPORT): the kernel said no
    probe.own_netlink = True  # type: ignore[attr-defined]  (needs no IPRoute)
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
    "ipset": _ipset,  # ip_set and the ipset tool (kube-router's and Felix's sets)
    # CONFIG_BRIDGE_VLAN_FILTERING: without it the kernel refuses `vlan_filtering 1` (EOPNOTSUPP)
    "vlan_filtering": _link("bridge", br_vlan_filtering=1),
}
# Link kinds bring their own probe (nsbox/kinds/links/, veth and bridge included):
# a new kind needs no line here.
for _k in _link_kinds.KINDS.values():
    if _k.probe is not None:
        PROBES[_k.name] = (_child if _k.needs_parent else _link)(_k.name, **_k.probe)
PROBES["veth"], PROBES["bridge"] = _own("veth"), _own("bridge")
# So do protocols the kernel may lack (nsbox/kinds/protocols/sctp.py): a socket() in the scratch netns.
for _name in _protocols.features():
    PROBES[_name] = _protocol_feature(_protocols.get(_name).feature)
# A feature without a probe is reported missing ("unknown feature") by status(), never an
# import error here; tests/test_unit_firewall_kinds.py checks that every one has a probe.


def missing(required: frozenset[str], iptables: str = "auto") -> dict[str, str]:
    """Feature -> reason, for each required feature this kernel lacks. IPTABLES: the
    backend the rules go to (--iptables), where "nat" is probed.

    Raises InstallError if a probe could not run because nsbox's own libraries are broken."""
    out = {}
    for f in sorted(required):
        st = status(f, iptables)
        if st.state == "broken":
            raise InstallError(st.reason)
        if st.state == "missing":
            out[f] = st.reason
    return out


@lru_cache(maxsize=None)
def status(feature: str, iptables: str = "auto") -> Status:
    """Probe FEATURE once per process (nat: in the IPTABLES backend). Must run with
    CAP_NET_ADMIN (root, or in a user namespace)."""
    probe = PROBES.get(feature)
    if feature == "nat":
        probe = partial(_iptables_nat, flavour=iptables)
        probe.own_netlink = True  # type: ignore[attr-defined]
    if probe is None:
        return Status(feature, "missing", f"unknown feature {feature!r}")
    own = getattr(probe, "own_netlink", False)  # sent by nsbox itself: no IPRoute (pyroute2's asyncio)
    try:
        IPRoute, NetlinkError = _pyroute2() if not own else (None, _netlink_error())
    except InstallError as e:
        return Status(feature, "broken", str(e))
    try:
        with netns.scratch():
            ipr = IPRoute() if IPRoute is not None else None
            try:
                probe(ipr)
            finally:
                if ipr is not None:
                    ipr.close()
    except InstallError as e:
        return Status(feature, "broken", str(e))
    except (KernelRefused, NetlinkError, OSError) as e:  # the kernel said no
        return Status(feature, "missing", f"this kernel lacks {feature} ({_reason(e)})")
    return Status(feature, "present")


def _netlink_error() -> type[Exception]:
    try:
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as e:
        raise (missing_module(e) or InstallError(f"pyroute2 does not load ({e}); {REINSTALL}")) from None
    return NetlinkError


def _reason(e: BaseException) -> str:
    # NetlinkError(code, message) and OSError(errno, strerror): the message is the kernel's word
    if len(e.args) > 1:
        return str(e.args[1])
    return str(e) or type(e).__name__
