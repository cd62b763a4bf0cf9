"""NetworkPolicy to the kernel as kube-router's iptables network-policy controller writes it.

Followed: cloudnativelabs/kube-router pkg/controllers/netpol/ (npc_iptables.go, policy.go,
pod.go, network_policy_controller.go, comments.go) and pkg/utils/{ipset,iptables}.go at
commit 7c2c2779e397b15b85dc5fd2b6e6ff2c64c38596 (Apache-2.0). The layout, chain for chain:

- INPUT/FORWARD/OUTPUT jump first to KUBE-ROUTER-INPUT/-FORWARD/-OUTPUT
  ("kube-router netpol - <uuid>"); KUBE-ROUTER-INPUT returns early for the service CIDR and
  LOCAL node ports.
- Per local pod a KUBE-POD-FW-<hash> chain, reached from KUBE-ROUTER-FORWARD by `-d pod`
  (routed and, with `-m physdev --physdev-is-bridged`, bridged traffic), from
  KUBE-ROUTER-OUTPUT by `-d pod`, and from all three by `-s pod`. It runs
  KUBE-NWPLCY-COMMON (INVALID drop, ESTABLISHED/RELATED accept, 3 ICMP types), accepts the
  node itself, jumps to each policy chain that selects the pod (`-d pod` for an Ingress
  policy, `-s pod` for Egress, no address for both) or to KUBE-NWPLCY-DEFAULT (which just
  marks 0x10000) for a direction no policy isolates; then NFLOG and REJECT what carries no
  0x10000 mark, clears that mark and sets 0x20000 (netpol-ok).
- Per policy a KUBE-NWPLCY-<hash> chain: each rule is a pair "mark 0x10000" + "RETURN if
  marked" over `-m set --match-set KUBE-SRC-… src` / `KUBE-DST-… dst`, `-p`, `--dport`
  (`N:M` for endPort). Pods are hash:ip sets; ipBlocks hash:net sets where each except is a
  `nomatch` entry; named ports are hash:ip sets of the pods whose port of that name has
  that number, one per number.
- KUBE-ROUTER-* end in KUBE-NWPLCY-TAIL (accept netpol-ok) and an explicit accept of 0x20000.

ipsets are loaded as kube-router loads them (BuildIPSetRestore: a TMP- set per option
string, filled, swapped in, flushed, destroyed). What differs: kube-router inserts the
top-level jumps with `iptables -I` and keeps the rest of the table; here the whole filter
table is one iptables-restore payload (the lab's node has no other filter rules). Go map
order (pods, named ports, the three default chains) is made deterministic by sorting.
defaultDeny (an off-by-default option) is not rendered.

Where kube-router departs from the API semantics (found by the simulator-vs-kernel property
test, tests/kernel/test_kernel_netpol_property.py; each shown on the kernel by a test of
tests/kernel/test_kernel_netpol.py), `render(strict=True)` mends it inside the same layout:
- a policy of both types is one chain jumped to for all traffic of its pods, so one selected
  pod's egress rule also admits traffic INTO another selected pod (ingress: [] no longer
  isolates); strict splits the egress half into a chain of its own, jumped to by `-s pod`
  (the ingress half by `-d pod`);
- an egress rule with no `to` and a named port resolves the name on the policy's own
  namespace's pods and then allows that number to ANY destination; strict resolves it on
  each destination pod (a named-port set as the destination);
- a named port in an egress rule towards an ipBlock is dropped (nothing allows it); strict
  writes it with the ipBlock set and the named-port set both matched on the destination;
- all ipBlock peers of a rule share one hash:net set, so one peer's `except` (a nomatch
  entry, the longest prefix wins) also removes that address from another peer's cidr that
  allows it; strict gives each peer its own set.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from nsbox.kits.netpol.model import Cluster, Pod, Policy, PolicyPort
from nsbox.kits.netpol.simulator import _peer_matches

FAMILY = "IPv4"  # api.IPv4Protocol
DEFAULT_CHAINS = {"INPUT": "KUBE-ROUTER-INPUT", "FORWARD": "KUBE-ROUTER-FORWARD", "OUTPUT": "KUBE-ROUTER-OUTPUT"}
DEFAULT_CHAIN = "KUBE-NWPLCY-DEFAULT"
COMMON_CHAIN = "KUBE-NWPLCY-COMMON"
TAIL_CHAIN = "KUBE-NWPLCY-TAIL"
MARK_MATCHED = "0x10000/0x10000"
MARK_OK = "0x20000/0x20000"
HASH_IP, HASH_NET = "hash:ip", "hash:net"
# RestoreSets runs `ipset restore -exist`: a pod two peers select is added twice, harmlessly.
IPSET_RESTORE = ("ipset", "restore", "-exist")


def _b32(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()


def pod_chain(pod: Pod, version: str) -> str:
    return "KUBE-POD-FW-" + _b32(pod.namespace + pod.name + version)[:16]


def policy_chain(p: Policy, version: str, half: str = "") -> str:
    """HALF "egress": the second chain of a policy of both types when split (strict mode)."""
    return "KUBE-NWPLCY-" + _b32(p.namespace + p.name + version + FAMILY + half)[:16]


def _set(prefix: str, key: str) -> str:
    return prefix + _b32(key)[:16]


def target_dst_set(p: Policy) -> str:
    return _set("KUBE-DST-", p.namespace + p.name + FAMILY)


def target_src_set(p: Policy) -> str:
    return _set("KUBE-SRC-", p.namespace + p.name + FAMILY)


def rule_pod_set(p: Policy, direction: str, i: int) -> str:
    prefix = "KUBE-SRC-" if direction == "ingress" else "KUBE-DST-"
    return _set(prefix, f"{p.namespace}{p.name}{direction}rule{i}{FAMILY}pod")


def rule_ipblock_set(p: Policy, direction: str, i: int) -> str:
    prefix = "KUBE-SRC-" if direction == "ingress" else "KUBE-DST-"
    return _set(prefix, f"{p.namespace}{p.name}{direction}rule{i}{FAMILY}ipblock")


def named_port_set(p: Policy, direction: str, i: int, j: int) -> str:
    return _set("KUBE-DST-", f"{p.namespace}{p.name}{direction}rule{i}{j}{FAMILY}namedport")


def _uuid(chain: str, spec: list[str]) -> str:
    """ensureTopLevelChains' addUUIDForRuleSpec: a hash of the chain and the joined rule spec."""
    return _b32(chain + "".join(spec))[:16]


@dataclass
class IPSet:
    name: str
    type: str
    entries: list[str] = field(default_factory=list)  # "10.0.1.1" or "10.0.0.0/16 nomatch"

    @property
    def options(self) -> str:
        return f"{self.type} timeout 0"


@dataclass
class Rendered:
    """What one full sync writes: the ipsets and the filter table's iptables-restore lines."""
    ipsets: dict[str, IPSet]
    chains: list[str]  # custom chains declared, in order
    rules: list[str]   # "-A CHAIN ..." / "-I CHAIN 1 ..." lines, in order

    def filter_restore(self) -> str:
        head = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        return "\n".join(head + [f":{c} - [0:0]" for c in self.chains] + self.rules + ["COMMIT", ""])

    def ipset_restore(self) -> str:
        """BuildIPSetRestore: sets by name; per distinct option string one TMP- set."""
        out: list[str] = []
        tmp: dict[str, str] = {}
        for name in sorted(self.ipsets):
            s = self.ipsets[name]
            t = tmp.get(s.options)
            if t is None:
                t = "TMP-" + base64.b32encode(hashlib.sha1(("tmp:" + s.options).encode()).digest()[:10]).decode()
                out += [f"create {t} {s.options}", f"flush {t}"]
                tmp[s.options] = t
            out += [f"add {t} {e} timeout 0" if " nomatch" not in e else f"add {t} {e.split()[0]} timeout 0 nomatch"
                    for e in s.entries]
            out += [f"create {s.name} {s.options}", f"swap {t} {s.name}", f"flush {t}"]
        out += [f"destroy {t}" for t in sorted(tmp.values())]
        return "\n".join(out) + "\n"

    def install(self, node: Any, top_level_first: bool = False) -> None:
        """This sync as part of a lab: each set on NODE's model (node.ipset: made in its netns
        before its rules; the sets kube-router's TMP-/swap sequence leaves, without their
        `timeout 0`, which no rule here uses; a hash:net entry as ipset stores it, host bits
        masked), then the filter chains and rules on node.iptables("filter") as
        iptables-save prints them, its -I lines inserted as kube-router inserts them.
        TOP_LEVEL_FIRST: its jumps from INPUT, FORWARD and OUTPUT go to the top of chains
        that already hold rules (ensureTopLevelChains inserts them at position 1, before what
        flannel, kube-proxy and the CNI put there: after FLANNEL-FWD's accept of the cluster
        CIDR no policy would ever be seen). The lab must lab.require("ipset").
        (ipset_restore()/filter_restore() remain the way to load a sync into a live node.)"""
        for name in sorted(self.ipsets):
            s = self.ipsets[name]
            node.ipset(s.name, s.type, [_masked(e) for e in s.entries] if s.type == "hash:net" else s.entries)
        table = node.iptables("filter")
        for chain in self.chains:
            if chain not in table.chains:
                table.new_chain(chain)
        for line in self.rules:
            op, chain, rest = line.split(" ", 2)
            if op == "-I":
                position, spec = rest.split(" ", 1)
                table.insert(chain, as_saved(spec), int(position))
            elif top_level_first and chain in ("INPUT", "FORWARD", "OUTPUT"):
                table.insert(chain, as_saved(rest), 1)
            else:
                table.append(chain, as_saved(rest))


def as_saved(spec: str) -> str:
    """A kube-router rule as iptables-save prints it (the model reads rules so): protocols in
    lower case (kube-router writes them as the API does, `-p TCP`), and trailing matches
    ahead of the target (its NFLOG rule puts `-m limit ...` after `-j NFLOG`)."""
    return _matches_first(re.sub(r"-p (TCP|UDP|SCTP)\b", lambda m: f"-p {m.group(1).lower()}", spec))


def _masked(entry: str) -> str:
    """A hash:net entry as ipset stores it: an ipBlock's cidr may have host bits set
    (10.0.1.1/4, as the e2e writes it); ipset masks them (0.0.0.0/4)."""
    net, _, flag = entry.partition(" ")
    return " ".join(x for x in (str(ipaddress.ip_network(net, strict=False)), flag) if x)


def _matches_first(spec: str) -> str:
    """kube-router writes its NFLOG rule's `-m limit ...` after `-j NFLOG --nflog-group 100`;
    iptables takes that and iptables-save prints the match first. The model reads rules as
    iptables-save prints them: the trailing matches are moved ahead of the target."""
    j = spec.find(" -j ")
    k = spec.find(" -m ", j + 1) if j >= 0 else -1
    return spec if k < 0 else f"{spec[:j]} {spec[k + 1:]} {spec[j + 1:k]}"


def _q(s: str) -> str:
    return '"' + s.replace('"', "") + '"'


def _ip_key(pod: Pod) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(pod.ip)


class _Writer:
    def __init__(self, cluster: Cluster, version: str, service_cidr: str, nodeport_range: str,
                 strict: bool) -> None:
        self.c = cluster
        self.strict = strict
        self.version = version
        self.service_cidr = service_cidr
        self.nodeport_range = nodeport_range
        self.sets: dict[str, IPSet] = {}
        self.chains: list[str] = []
        self.rules: list[str] = []

    # -- helpers
    def refresh(self, name: str, typ: str, entries: list[str]) -> None:
        self.sets[name] = IPSet(name, typ, list(entries))

    def pods_of(self, p: Policy) -> list[Pod]:
        return sorted((pod for pod in self.c.pods.values()
                       if pod.namespace == p.namespace and p.pod_selector.matches(pod.labels)), key=_ip_key)

    def peer_pods(self, p: Policy, peers) -> list[Pod]:
        """evalPodPeer over every selector peer of a rule (ipBlock peers are not pods)."""
        out: list[Pod] = []
        for peer in peers:
            if peer.ip_block is not None:
                continue
            out += sorted((o for o in self.c.pods.values() if _peer_matches(peer, p, o, self.c)), key=_ip_key)
        return out

    def ipblocks(self, peers) -> list[str]:
        """evalIPBlockPeer: cidr entries, each except a nomatch entry; /0 split into two /1."""
        out: list[str] = []
        for peer in peers:
            b = peer.ip_block
            if b is None or ":" in b.cidr:
                continue
            out += ["0.0.0.0/1", "128.0.0.0/1"] if b.cidr.endswith("/0") else [b.cidr]
            for e in b.excepts:
                out += ["0.0.0.0/1 nomatch", "128.0.0.0/1 nomatch"] if e.endswith("/0") else [f"{e} nomatch"]
        return out

    def block_sets(self, p: Policy, direction: str, i: int, peers) -> list[str]:
        """The hash:net set(s) of a rule's ipBlock peers, filled. kube-router: one set for all
        of them, where one peer's `except` (a nomatch entry, the most specific prefix wins)
        also cuts that address out of another peer's cidr; strict: one set per peer."""
        if not self.strict:
            entries = self.ipblocks(peers)
            if not entries:
                return []
            name = rule_ipblock_set(p, direction, i)
            self.refresh(name, HASH_NET, entries)
            return [name]
        names = []
        for k, peer in enumerate(peers):
            entries = self.ipblocks([peer])
            if entries:
                name = _set("KUBE-SRC-" if direction == "ingress" else "KUBE-DST-",
                            f"{p.namespace}{p.name}{direction}rule{i}{FAMILY}ipblock{k}")
                self.refresh(name, HASH_NET, entries)
                names.append(name)
        return names

    @staticmethod
    def named_eps(pods: list[Pod]) -> dict[str, dict[str, dict[int, list[str]]]]:
        """grabNamedPortFromPod: port name -> protocol -> number -> pod IPs."""
        eps: dict[str, dict[str, dict[int, list[str]]]] = {}
        for pod in pods:
            for cp in pod.ports:
                eps.setdefault(cp.name, {}).setdefault(cp.protocol, {}).setdefault(cp.port, []).append(pod.ip)
        return eps

    @staticmethod
    def split_ports(ports: tuple[PolicyPort, ...], eps) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, list[str]]]]:
        """processNetworkPolicyPorts: numeric (protocol, port, endport) and named (protocol, port, ips)."""
        numeric, named = [], []
        for pp in ports:
            if pp.port is None:
                numeric.append((pp.protocol, "", ""))
            elif isinstance(pp.port, int):
                numeric.append((pp.protocol, str(pp.port), str(pp.end_port) if pp.end_port else ""))
            else:
                for number, ips in sorted(eps.get(pp.port, {}).get(pp.protocol, {}).items()):
                    named.append((pp.protocol, str(number), ips))
        return numeric, named

    def append_rule(self, chain: str, comment: str, src: str, dst: str, proto: str, port: str, end: str,
                    dst2: str = "") -> None:
        """appendRuleToPolicyChain: the mark rule and the RETURN-if-marked rule. DST2 (strict
        mode only): a second destination set, the named port's pods inside an ipBlock."""
        args = ["-A", chain, "-m", "comment", "--comment", _q(comment)]
        if src:
            args += ["-m", "set", "--match-set", src, "src"]
        if dst:
            args += ["-m", "set", "--match-set", dst, "dst"]
        if dst2:
            args += ["-m", "set", "--match-set", dst2, "dst"]
        if proto:
            args += ["-p", proto]
        if port:
            args += ["--dport", f"{port}:{end}" if end else port]
        self.rules.append(" ".join(args + ["-j", "MARK", "--set-xmark", MARK_MATCHED]))
        self.rules.append(" ".join(args + ["-m", "mark", "--mark", MARK_MATCHED, "-j", "RETURN"]))

    # -- the fixed chains
    def top_level(self) -> None:
        self.chains += [COMMON_CHAIN, DEFAULT_CHAIN, TAIL_CHAIN, *DEFAULT_CHAINS.values()]
        for builtin, custom in DEFAULT_CHAINS.items():
            spec = ["-m", "comment", "--comment", "kube-router netpol", "-j", custom]
            self.rules.append(f'-A {builtin} -m comment --comment "kube-router netpol - {_uuid(builtin, spec)}" '
                              f"-j {custom}")
        inp = DEFAULT_CHAINS["INPUT"]
        spec = ["-m", "comment", "--comment", "allow traffic to primary/secondary cluster IP range",
                "-d", self.service_cidr, "-j", "RETURN"]
        self.rules.append(f'-A {inp} -m comment --comment "allow traffic to primary/secondary cluster IP range - '
                          f'{_uuid(inp, spec)}" -d {self.service_cidr} -j RETURN')
        for proto in ("tcp", "udp", "sctp"):
            comment = f"allow LOCAL {proto.upper()} traffic to node ports"
            spec = ["-p", proto, "-m", "comment", "--comment", comment, "-m", "addrtype", "--dst-type", "LOCAL",
                    "-m", "multiport", "--dports", self.nodeport_range, "-j", "RETURN"]
            self.rules.append(f'-A {inp} -p {proto} -m comment --comment "{comment} - {_uuid(inp, spec)}" '
                              f"-m addrtype --dst-type LOCAL -m multiport --dports {self.nodeport_range} -j RETURN")
        self.rules.append(f'-A {DEFAULT_CHAIN} -m comment --comment "rule to mark traffic matching a network policy" '
                          f"-j MARK --set-xmark {MARK_MATCHED}")
        self.rules += [
            f'-A {COMMON_CHAIN} -m comment --comment "rule to drop invalid state for pod" '
            "-m conntrack --ctstate INVALID -j DROP",
            f'-A {COMMON_CHAIN} -m comment --comment "rule for stateful firewall for pod" '
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f'-A {COMMON_CHAIN} -m comment --comment "allow icmp echo requests" -p icmp --icmp-type echo-request '
            "-j ACCEPT",
            f'-A {COMMON_CHAIN} -m comment --comment "allow icmp destination unreachable messages" -p icmp '
            "--icmp-type destination-unreachable -j ACCEPT",
            f'-A {COMMON_CHAIN} -m comment --comment "allow icmp time exceeded messages" -p icmp '
            "--icmp-type time-exceeded -j ACCEPT",
            f'-A {TAIL_CHAIN} -m comment --comment "accept netpol-ok" -m mark --mark {MARK_OK} -j ACCEPT',
        ]

    # -- syncNetworkPolicyChains
    def split(self, p: Policy) -> bool:
        return self.strict and "Ingress" in p.policy_types and "Egress" in p.policy_types

    def policy(self, p: Policy) -> None:
        chain = policy_chain(p, self.version)
        self.chains.append(chain)
        targets = self.pods_of(p)
        ingress, egress = "Ingress" in p.policy_types, "Egress" in p.policy_types
        if ingress:
            dst = target_dst_set(p)
            self.refresh(dst, HASH_IP, [t.ip for t in targets])
            self.ingress(p, chain, dst, self.named_eps(targets))
        if egress:
            src = target_src_set(p)
            self.refresh(src, HASH_IP, [t.ip for t in targets])
            if self.split(p):
                chain = policy_chain(p, self.version, "egress")
                self.chains.append(chain)
            self.egress(p, chain, src)

    def ingress(self, p: Policy, chain: str, target_dst: str, eps) -> None:
        for i, rule in enumerate(p.ingress_rules):
            match_all_src, match_all_ports = not rule.peers, not rule.ports
            numeric, named = self.split_ports(rule.ports, eps)
            who = f"{p.namespace}/{p.name}"
            src_pods = self.peer_pods(p, rule.peers)
            if src_pods:
                src_set = rule_pod_set(p, "ingress", i)
                self.refresh(src_set, HASH_IP, [s.ip for s in src_pods])
                for proto, port, end in numeric:
                    self.append_rule(chain, f"{who} ingress pods", src_set, target_dst, proto, port, end)
                for j, (proto, port, ips) in enumerate(named):
                    np_set = named_port_set(p, "ingress", i, j)
                    self.refresh(np_set, HASH_IP, ips)
                    self.append_rule(chain, f"{who} ingress pods np", src_set, np_set, proto, port, "")
                if not numeric and not named:
                    self.append_rule(chain, f"{who} ingress pods", src_set, target_dst, "", "", "")
            if match_all_src and not match_all_ports:
                for proto, port, end in numeric:
                    self.append_rule(chain, f"{who} ingress any", "", target_dst, proto, port, end)
                for j, (proto, port, ips) in enumerate(named):
                    np_set = named_port_set(p, "ingress", i, j)
                    self.refresh(np_set, HASH_IP, ips)
                    self.append_rule(chain, f"{who} ingress any np", "", np_set, proto, port, "")
            if match_all_src and match_all_ports:
                self.append_rule(chain, f"{who} ingress any", "", target_dst, "", "", "")
            for blk in self.block_sets(p, "ingress", i, rule.peers):
                if not match_all_ports:
                    for proto, port, end in numeric:
                        self.append_rule(chain, f"{who} ingress cidr", blk, target_dst, proto, port, end)
                    for j, (proto, port, ips) in enumerate(named):
                        np_set = named_port_set(p, "ingress", i, j)
                        self.refresh(np_set, HASH_NET, ips)
                        self.append_rule(chain, f"{who} ingress cidr np", blk, np_set, proto, port, "")
                else:
                    self.append_rule(chain, f"{who} ingress cidr", blk, target_dst, "", "", "")

    def egress(self, p: Policy, chain: str, target_src: str) -> None:
        for i, rule in enumerate(p.egress_rules):
            who = f"{p.namespace}/{p.name}"
            match_all_dst, match_all_ports = not rule.peers, not rule.ports
            dst_pods = self.peer_pods(p, rule.peers)
            every_pod = sorted(self.c.pods.values(), key=_ip_key)
            if match_all_dst and self.strict:  # strict: a named port resolves on the destination pod
                eps = self.named_eps(every_pod)
            elif match_all_dst:  # kube-router: on the pods of the policy's namespace, any destination
                eps = self.named_eps([o for o in every_pod if o.namespace == p.namespace])
            else:
                eps = self.named_eps(dst_pods)
            numeric, named = self.split_ports(rule.ports, eps)
            if dst_pods:
                dst_set = rule_pod_set(p, "egress", i)
                self.refresh(dst_set, HASH_IP, [d.ip for d in dst_pods])
                for proto, port, end in numeric:
                    self.append_rule(chain, f"{who} egress pods", target_src, dst_set, proto, port, end)
                for j, (proto, port, ips) in enumerate(named):
                    np_set = named_port_set(p, "egress", i, j)
                    self.refresh(np_set, HASH_IP, ips)
                    self.append_rule(chain, f"{who} egress pods np", target_src, np_set, proto, port, "")
                if not numeric and not named:
                    self.append_rule(chain, f"{who} egress pods", target_src, dst_set, "", "", "")
            if match_all_dst and not match_all_ports:
                for proto, port, end in numeric:
                    self.append_rule(chain, f"{who} egress any", target_src, "", proto, port, end)
                for j, (proto, port, ips) in enumerate(named):
                    if self.strict:
                        np_set = named_port_set(p, "egress", i, j)
                        self.refresh(np_set, HASH_IP, ips)
                        self.append_rule(chain, f"{who} egress any np", target_src, np_set, proto, port, "")
                    else:
                        self.append_rule(chain, f"{who} egress any np", target_src, "", proto, port, "")
            if match_all_dst and match_all_ports:
                self.append_rule(chain, f"{who} egress any", target_src, "", "", "", "")
            for blk in self.block_sets(p, "egress", i, rule.peers):
                if not match_all_ports:
                    for proto, port, end in numeric:
                        self.append_rule(chain, f"{who} egress cidr", target_src, blk, proto, port, end)
                    # kube-router writes nothing for a named port towards an ipBlock (a deny)
                    for j, (proto, port, ips) in enumerate(self.split_ports(rule.ports, self.named_eps(every_pod))[1]
                                                           if self.strict else []):
                        np_set = _set("KUBE-DST-", f"{blk}{j}namedport")
                        self.refresh(np_set, HASH_IP, ips)
                        self.append_rule(chain, f"{who} egress cidr np", target_src, blk, proto, port, "", np_set)
                else:
                    self.append_rule(chain, f"{who} egress cidr", target_src, blk, "", "", "")

    # -- syncPodFirewallChains
    def pod(self, pod: Pod) -> None:
        fw = pod_chain(pod, self.version)
        self.chains.append(fw)
        ip = pod.ip
        has_in = has_out = False
        for p in self.c.policies:
            if pod not in self.pods_of(p):
                continue
            comment = _q(f"{p.namespace}/{p.name} policy")
            target = policy_chain(p, self.version)
            ing, eg = "Ingress" in p.policy_types, "Egress" in p.policy_types
            has_in, has_out = has_in or ing, has_out or eg
            if self.split(p):  # strict: each half only for its own direction
                self.rules.append(f"-I {fw} 1 -d {ip} -m comment --comment {comment} -j {target}")
                self.rules.append(f"-I {fw} 1 -s {ip} -m comment --comment {comment} "
                                  f"-j {policy_chain(p, self.version, 'egress')}")
                continue
            where = "" if ing and eg else f"-d {ip} " if ing else f"-s {ip} "
            self.rules.append(f"-I {fw} 1 {where}-m comment --comment {comment} -j {target}")
        if not has_in:
            self.rules.append(f'-I {fw} 1 -d {ip} -m comment --comment "default ingress" -j {DEFAULT_CHAIN}')
        if not has_out:
            self.rules.append(f'-I {fw} 1 -s {ip} -m comment --comment "default egress" -j {DEFAULT_CHAIN}')
        self.rules.append(f'-I {fw} 1 -m comment --comment "from local node" -m addrtype --src-type LOCAL '
                          f"-d {ip} -j ACCEPT")
        self.rules.append(f'-I {fw} 1 -m comment --comment "common netpol rules" -j {COMMON_CHAIN}')
        who = f"{pod.namespace}/{pod.name}"
        fwd, out = DEFAULT_CHAINS["FORWARD"], DEFAULT_CHAINS["OUTPUT"]
        # interceptPodInboundTraffic
        self.rules.append(f"-A {fwd} -m comment --comment {_q(who + ' in')} -d {ip} -j {fw}")
        self.rules.append(f"-A {out} -m comment --comment {_q(who + ' in')} -d {ip} -j {fw}")
        self.rules.append(f"-A {fwd} -m physdev --physdev-is-bridged -m comment --comment {_q(who + ' in')} "
                          f"-d {ip} -j {fw}")
        # interceptPodOutboundTraffic
        for chain in DEFAULT_CHAINS.values():
            self.rules.append(f"-A {chain} -m comment --comment {_q(who + ' out')} -s {ip} -j {fw}")
        self.rules.append(f"-A {fwd} -m physdev --physdev-is-bridged -m comment --comment {_q(who + ' out')} "
                          f"-s {ip} -j {fw}")
        # dropUnmarkedTrafficRules, then the netpol-ok mark
        self.rules.append(f"-A {fw} -m comment --comment {_q(who + ' log-drop')} -m mark ! --mark {MARK_MATCHED} "
                          "-j NFLOG --nflog-group 100 -m limit --limit 10/minute --limit-burst 10")
        self.rules.append(f"-A {fw} -m comment --comment {_q(who + ' reject')} -m mark ! --mark {MARK_MATCHED} "
                          "-j REJECT")
        self.rules.append(f"-A {fw} -j MARK --set-mark 0/0x10000")
        self.rules.append(f'-A {fw} -m comment --comment "set netpol-ok mark" -j MARK --set-mark {MARK_OK}')

    def tail(self) -> None:
        for chain in DEFAULT_CHAINS.values():  # ensureTailChainPosition, then ensureExplicitAccept
            self.rules.append(f'-A {chain} -m comment --comment "rule to explicitly handle traffic for network '
                              f'policies ACCEPT/REJECT decision" -j {TAIL_CHAIN}')
        for chain in DEFAULT_CHAINS.values():
            self.rules.append(f'-A {chain} -m comment --comment "rule to explicitly ACCEPT traffic that comply to '
                              f'network policies" -m mark --mark {MARK_OK} -j ACCEPT')


def render(cluster: Cluster, *, version: str = "1", local_pods: list[str] | None = None,
           service_cidr: str = "10.96.0.0/12", nodeport_range: str = "30000:32767",
           strict: bool = False) -> Rendered:
    """One full policy sync of the node that runs LOCAL_PODS ("ns/name"; default: every pod).
    VERSION is the sync version kube-router folds into chain names (a timestamp there).
    STRICT mends where kube-router departs from the API semantics (see STRICT_FIXES);
    without it the rules are kube-router's, departures included."""
    w = _Writer(cluster, version, service_cidr, nodeport_range, strict)
    w.top_level()
    for p in cluster.policies:
        w.policy(p)
    local = [cluster.pods[k] for k in local_pods] if local_pods is not None else list(cluster.pods.values())
    for pod in sorted(local, key=_ip_key):
        w.pod(pod)
    w.tail()
    return Rendered(w.sets, w.chains, w.rules)


def node_of(key: str) -> str:
    """The lab node of the e2e pod KEY ("x/a" -> "x-a")."""
    return key.replace("/", "-")


def kube_router_node(lab: Any, ports: tuple[int, ...] = (80, 81), protocols: tuple[str, ...] = ("tcp", "udp")) -> Any:
    """One kube-router node as the e2e model needs it: kube-bridge (10.0.0.254/16), the nine
    pods at their e2e addresses, each serving PORTS over PROTOCOLS. Returns the node; the
    lab must still get kube-router's sync (Rendered.install, or a live ipset/filter load)."""
    from nsbox.kits.netpol import PODS
    from nsbox.kits.netpol.cases import pod_ip

    lab.require("veth", "bridge", "conntrack")
    node = lab.node("node")
    node.bridge("kube-bridge", "10.0.0.254/16")
    # kube-router needs bridged pod-to-pod traffic to traverse FORWARD (physdev-is-bridged).
    node.sysctl("net.bridge.bridge-nf-call-iptables", 1)
    # A denied client gets the node's REJECT (ICMP port unreachable) for each probe within
    # milliseconds; the kernel's per-destination ICMP rate limit (a burst of 6, then 1/s)
    # would turn the 7th into a 1 s timeout. Probes, not policy, would differ.
    node.sysctl("net.ipv4.icmp_ratelimit", 0)
    for key in PODS:
        pod = lab.node(node_of(key))
        lab.veth(pod, "eth0", node, f"v-{node_of(key)}", b_master="kube-bridge")
        pod.address("eth0", f"{pod_ip(key)}/16")
        for port in ports:
            for proto in protocols:
                pod.serve(proto, port)
    return node
