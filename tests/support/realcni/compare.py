"""Normalise what dump.sh wrote, so the real plugins' node and nsbox's can be compared.

Only what is random is normalised: host veth names (`veth` + 4 random bytes) become
`veth@POD` by the pod whose eth0 is their peer, MACs and ifindexes are dropped (and
what is derived from them: IPv6 link-local addresses, bridge ids), iptables-save's
header comments and counters are dropped. The node's uplink peer `upstream0` lives in
the real node (real.sh has one netns only) and in nsbox's "upstream" node: it is left
out. Everything else -- link kinds, masters, MTU, txqueuelen, hairpin, addresses with
their flags, routes with type/scope/proto/src, sysctls, rules -- must be equal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

UPLINK_PEER = "upstream0"
BRIDGE_KEYS = ("stp_state", "vlan_filtering", "forward_delay", "ageing_time", "mcast_snooping", "nf_call_iptables")
PORT_KEYS = ("state", "hairpin", "learning", "flood", "isolated", "proxy_arp")


def _load(d: Path, ns: str, what: str) -> Any:
    return json.loads((d / f"{ns}.{what}.json").read_text() or "[]")


def veth_names(d: Path, pods: list[str]) -> dict[str, str]:
    """Host veth name -> veth@POD: the node link whose ifindex is POD's eth0 link_index."""
    by_index = {link["ifindex"]: link["ifname"] for link in _load(d, "node", "link")}
    out = {}
    for pod in pods:
        for link in _load(d, pod, "link"):
            if link["ifname"] == "eth0" and "link_index" in link:
                out[by_index[link["link_index"]]] = f"veth@{pod}"
    return out


def _links(d: Path, ns: str, names: dict[str, str]) -> dict[str, dict]:
    out = {}
    for link in _load(d, ns, "link"):
        name = link["ifname"]
        if name == UPLINK_PEER:
            continue
        info = link.get("linkinfo") or {}
        row: dict[str, Any] = {
            "flags": sorted(link.get("flags", [])), "mtu": link.get("mtu"), "operstate": link.get("operstate"),
            "master": link.get("master"), "txqlen": link.get("txqlen", 0), "link_type": link.get("link_type"),
            "kind": info.get("info_kind"), "slave_kind": info.get("info_slave_kind"),
            "promiscuity": link.get("promiscuity"),
        }
        if info.get("info_kind") == "bridge":
            row["bridge"] = {k: info.get("info_data", {}).get(k) for k in BRIDGE_KEYS}
        if info.get("info_slave_kind") == "bridge":
            row["port"] = {k: info.get("info_slave_data", {}).get(k) for k in PORT_KEYS}
        out[names.get(name, name)] = row
    return out


def _addrs(d: Path, ns: str, names: dict[str, str]) -> list[tuple]:
    out = []
    for link in _load(d, ns, "addr"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "link" and a["family"] == "inet6":
                continue  # fe80:: from the random MAC
            flags = tuple(sorted(k for k in ("noprefixroute", "nodad", "tentative", "dadfailed", "secondary")
                                 if a.get(k)))
            out.append((names.get(link["ifname"], link["ifname"]), a["family"], a["local"], a["prefixlen"],
                        a.get("broadcast"), a.get("scope"), flags))
    return sorted(out)


def _routes(d: Path, ns: str, names: dict[str, str]) -> list[tuple]:
    out = []
    for r in _load(d, ns, "route"):
        if r.get("dev") == UPLINK_PEER:
            continue
        out.append((r.get("type", "unicast"), r["dst"], r.get("gateway"), names.get(r.get("dev"), r.get("dev")),
                    r.get("scope"), r.get("protocol"), r.get("prefsrc"), tuple(sorted(r.get("flags", [])))))
    return sorted(out, key=repr)


def _sysctls(d: Path, ns: str, names: dict[str, str]) -> dict[str, str]:
    out = {}
    for line in (d / f"{ns}.sysctl").read_text().splitlines():
        key, _, value = line.partition(" ")
        parts = key.split(".")
        if len(parts) > 4 and parts[2] == "conf":
            if parts[3] == UPLINK_PEER:
                continue
            parts[3] = names.get(parts[3], parts[3])
        out[".".join(parts)] = value
    return out


def _iptables(d: Path, ns: str) -> list[str]:
    out = []
    for line in (d / f"{ns}.iptables").read_text().splitlines():
        if line.startswith("#"):
            continue
        out.append(re.sub(r" \[\d+:\d+\]$", "", line))
    return out


def snapshot(d: Path, pods: list[str]) -> dict[str, Any]:
    """Everything comparable, per namespace ("node" and each pod)."""
    names = veth_names(d, pods)
    snap: dict[str, Any] = {}
    for ns in ["node", *pods]:
        snap[ns] = {"links": _links(d, ns, names), "addrs": _addrs(d, ns, names),
                    "routes": _routes(d, ns, names), "sysctls": _sysctls(d, ns, names),
                    "iptables": _iptables(d, ns)}
    return snap


def differences(real: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """One line per differing item: 'node routes: real ... / nsbox ...'."""
    out = []
    for ns in sorted(set(real) | set(ours)):
        for what in ("links", "addrs", "routes", "sysctls", "iptables"):
            a, b = real.get(ns, {}).get(what), ours.get(ns, {}).get(what)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        out.append(f"{ns} {what} {k}: real {a.get(k)!r} / nsbox {b.get(k)!r}")
            else:
                sa, sb = set(map(repr, a or [])), set(map(repr, b or []))
                out.append(f"{ns} {what}: only real {sorted(sa - sb)} / only nsbox {sorted(sb - sa)}"
                           if sa != sb else f"{ns} {what}: order differs: real {a} / nsbox {b}")
    return out
