"""reach: SRC reaches (allow) or does not reach (deny) DST with PROTO[/PORT] -- real traffic.

Builders: lab.expect, lab.expect_dns, lab.expect_matrix (cells), lab.expect_spread (probes).
The probing itself (all at once in one loop; rule-counter checks one at a time) is the
verifier's traffic engine, nsbox/verify/verifier.py run_reach(); this module holds the
check, its validation, its JSON form and what explains it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.errors import ValidationError
from nsbox.kinds.checks import TRAFFIC, CheckKind, Verification, register
from nsbox.kinds.ruleref import RuleRef, maybe_rule_ref

if TYPE_CHECKING:
    from nsbox.model.lab import Lab

# How a denial shows at the source (ProbeResult.kind): refused = a TCP RST or ICMP port
# unreachable (ECONNREFUSED); unreachable = ICMP net/host unreachable, or no route / no
# neighbour here; filtered = ICMP administratively prohibited (iptables REJECT
# --reject-with icmp-admin-prohibited, icmp-net/host-prohibited), or this netns's own
# OUTPUT dropped it (EPERM); timeout = nothing came back.
DENY_KINDS = ("refused", "timeout", "unreachable", "filtered")


@dataclass(frozen=True)
class ReachCheck:
    """SRC reaches (allow) or does not reach (deny) DST with PROTO[/PORT]."""

    name: str
    src: str
    dst: str  # node name or an address owned by a lab node
    proto: str  # a probe protocol: nsbox/kinds/protocols/ (icmp, tcp, udp, http, dns, sctp, ...)
    port: int | None = None
    allow: bool = True
    # the server must see this source address (or one of these: several are any of them)
    seen_from: str | tuple[str, ...] | None = None
    # deny checks: the rule that must drop the probe (nsbox.kinds.ruleref: written as
    # (node, table, chain, spec); spec is the rule as the recipe wrote it, or "policy")
    dropped_by: RuleRef | None = None
    # allow checks: the container (one of the set) whose server must answer
    answered_by: frozenset[str] | None = None
    # dns checks: the name asked for, and the A record it must get (None: NXDOMAIN)
    query: str | None = None
    answer: str | None = None
    # a node-name target: probe its first address of this family (4 or 6); None: its first
    family: int | None = None
    # any check: the rule whose packet counter must rise for this probe, any target (ACCEPT,
    # DNAT, MASQUERADE, a jump...), named as dropped_by names one
    counted_by: RuleRef | None = None
    # deny checks: how the denial must show (DENY_KINDS), None: any way
    deny: str | None = None
    # icmp checks: the echo request's IP packet size in bytes (header included, as an MTU
    # counts it; None: a small one), sent with don't-fragment when df
    size: int | None = None
    df: bool = False

    def __post_init__(self) -> None:
        # a rule reference is a RuleRef variant however the check was made (builder, JSON,
        # dataclasses.replace); a malformed one stays as it is for validation to name
        for f in ("dropped_by", "counted_by"):
            value = getattr(self, f)
            if value is not None:
                object.__setattr__(self, f, maybe_rule_ref(value))

    @property
    def seen_froms(self) -> tuple[str, ...]:
        """seen_from as a tuple (empty: none asked for)."""
        if self.seen_from is None:
            return ()
        return (self.seen_from,) if isinstance(self.seen_from, str) else tuple(self.seen_from)

    @property
    def expected(self) -> str:
        base = self._expected()
        return f"{base}, counted by {self.counted_by.describe()}" if self.counted_by else base

    def _expected(self) -> str:
        from nsbox.kinds import protocols

        proto = protocols.PROTOCOLS.get(self.proto)
        if proto is not None and proto.expected is not None:  # dns: the answer it must get
            return proto.expected(self)
        if self.allow and (self.seen_from or self.answered_by):
            parts = []
            if self.answered_by:
                parts.append("answered by " + "|".join(sorted(self.answered_by)))
            if self.seen_from:
                parts.append("seen from " + "|".join(self.seen_froms))
            return "allow, " + ", ".join(parts)
        deny = f"deny ({self.deny})" if self.deny else "deny"
        if self.dropped_by:
            return f"{deny}, dropped by {self.dropped_by.describe()}"
        return "allow" if self.allow else deny


def expect(lab: Lab, src: Any, dst: Any, proto: str, port: int | None = None, *, allow: bool = True,
           seen_from: Any = None, name: str | None = None, dropped_by: Any = None, counted_by: Any = None,
           deny: str | None = None, size: int | None = None, df: bool = False, answered_by: Any = None,
           family: int | None = None) -> ReachCheck:
    """lab.expect (documented there): the builder's own normalization; the rest is validate()."""
    from nsbox.model.lab import ContainerHandle, Node, _name, _reach_name

    if family not in (None, 4, 6):
        raise ValidationError(f"expect {src} -> {dst}: family must be 4 or 6, not {family!r}")
    if seen_from is not None and not isinstance(seen_from, str):
        seen_from = tuple(seen_from)
        if len(seen_from) == 1:
            seen_from = seen_from[0]
    src, dst = _name(src), lab._target_name(dst)
    answered: frozenset[str] | None = None
    if answered_by is not None:
        answered = frozenset([_name(answered_by)] if isinstance(answered_by, (str, Node, ContainerHandle))
                             else (_name(a) for a in answered_by))
    check = ReachCheck(src=src, dst=dst, proto=proto, port=port, allow=allow, seen_from=seen_from,  # type: ignore[arg-type]
                       name=name or _reach_name(src, dst, proto, port) + (f" (IPv{family})" if family else ""),
                       dropped_by=dropped_by, counted_by=counted_by, deny=deny, size=size, df=df,
                       answered_by=answered, family=family)
    lab._add_check(check)
    return check


def expect_dns(lab: Lab, src: Any, server: str, name: str, answer: str | None, port: int = 53, *,
               check_name: str | None = None) -> ReachCheck:
    """lab.expect_dns (documented there): a dns probe is a reach check that asks for a name."""
    from nsbox.model.lab import _name

    s = _name(src)
    check = ReachCheck(name=check_name or f"dns {s}: {name}", src=s, dst=server, proto="dns", port=port,
                       query=name, answer=answer)
    lab._add_check(check)
    return check


def family_of(lab: Lab, c: ReachCheck) -> int:
    """The probe's IP family: an IPv6 probe only meets ip6tables rules."""
    return 6 if ":" in lab.target(c.src, c.dst, c.proto, c.port, c.family).ip else 4


# -- validation ---------------------------------------------------------------------------------

def validate(lab: Lab, c: ReachCheck, reach: dict[str, Any]) -> None:
    from nsbox.kinds import protocols
    from nsbox.validate import probe_target

    if c.src not in lab.nodes and c.src not in lab.containers:
        raise ValidationError(f"check {c.name!r}: unknown source node {c.src!r}")
    try:  # the protocol's module judges its own options (nsbox/kinds/protocols/)
        proto = protocols.get(c.proto)
    except ValidationError as e:
        raise ValidationError(f"check {c.name!r}: {e}") from None
    target = lab.target(c.src, c.dst, c.proto, c.port, c.family)
    _check_self_answer(lab, c, target)
    virtual = lab.virtual_for(target, c.proto, c.port)
    dst_node = target.node
    try:  # the one rule of which probes a lab accepts, as every front end asks it
        probe_target(lab, c.src, c.dst, c.proto, c.port, c.family, c.query)
    except ValidationError as e:
        raise ValidationError(f"check {c.name!r}: {e}") from None
    protocols.check_options(c, f"check {c.name!r}")
    if proto.check is not None:
        proto.check(lab, c, f"check {c.name!r}")
    relayed = False
    if proto.needs_port:
        kinds = set(proto.answers)
        # Without a listener a 'deny' would be a refused port, not a blocked path. A
        # virtual address or port has none: rules send the packets on (answered_by says where).
        l4 = proto.transport
        relayed = virtual is not None or (dst_node is not None and any(
            p.proto == l4 and p.host_port == c.port for p in dst_node.proxies))
        if not relayed and dst_node is not None and \
                not any(s.port == c.port and s.kind in kinds for s in dst_node.servers):
            raise ValidationError(f"check {c.name!r}: no {'/'.join(sorted(kinds))} server on "
                                  f"{target.label} port {c.port}" +
                                  (" (a published port or Service: declare it with lab.virtual)"
                                   if c.allow else ""))
    if c.answered_by is not None:
        _check_answered_by(lab, c, dst_node, relayed)
    if c.dropped_by is not None:
        if c.allow:
            raise ValidationError(f"check {c.name!r}: dropped_by needs a deny check (allow=False)")
        _check_rule_ref(lab, c, c.dropped_by, "dropped_by", drops=True)
    if c.seen_from is not None:
        if not proto.records_peer or not c.allow:
            raise ValidationError(f"check {c.name!r}: seen_from needs an allowed "
                                  f"{'/'.join(protocols.where(lambda p: p.records_peer))} check")
        if not c.seen_froms or not all(isinstance(a, str) and a for a in c.seen_froms):
            raise ValidationError(f"check {c.name!r}: seen_from is an address or a non-empty list of "
                                  f"addresses, not {c.seen_from!r}")
        for a in c.seen_froms:
            lab.resolve(a)
    if c.counted_by is not None:
        # counted_by names a rule as dropped_by does, of any target: it must exist
        if c.dropped_by is not None:
            raise ValidationError(f"check {c.name!r}: dropped_by and counted_by together: name the rule once "
                                  f"(dropped_by is a counted_by for a deny)")
        _check_rule_ref(lab, c, c.counted_by, "counted_by", drops=False)
    if c.deny is not None:
        if c.deny not in DENY_KINDS:
            raise ValidationError(f"check {c.name!r}: deny must be one of {', '.join(DENY_KINDS)}, "
                                  f"not {c.deny!r}")
        if c.allow or not proto.plain:
            raise ValidationError(f"check {c.name!r}: deny={c.deny!r} needs allow=False "
                                  f"(and an {'/'.join(protocols.where(lambda p: p.plain))} probe)")


def _check_rule_ref(lab: Lab, c: ReachCheck, ref: Any, what: str, drops: bool) -> None:
    if not isinstance(ref, RuleRef):  # __post_init__ made every well-formed one a RuleRef
        raise ValidationError(f"check {c.name!r}: {what} is (node, table, chain, rule spec or 'policy')")
    ref.validate(lab, c.name, family_of(lab, c), what, drops)


def _check_self_answer(lab: Lab, c: ReachCheck, target) -> None:
    """A probe to an address its own netns holds is answered by that netns, never by DST: the
    check would pass without a packet leaving the source. Only a check whose destination is
    the source itself may do that; a shared (anycast) address is left to the verifier."""
    src = lab.netns_of(c.src)
    if target.node is None or target.node.name == src.name or target.loopback:
        return
    mine = [a for a in src.addresses if a.ip == target.ip]
    if mine and not all(a.shared for a in mine):
        raise ValidationError(f"check {c.name!r}: {c.src} holds {target.ip} itself, so its own netns would "
                              f"answer the probe, not {target.label}")


def _check_answered_by(lab: Lab, c: ReachCheck, dst_node, relayed: bool) -> None:
    """RELAYED: rules (a virtual address or port) or a proxy send the connection on, so the
    answer may come from another netns and another port."""
    from nsbox.kinds import protocols

    if not c.allow or not protocols.get(c.proto).records_peer:
        raise ValidationError(f"check {c.name!r}: answered_by needs an allowed "
                              f"{'/'.join(protocols.where(lambda p: p.records_peer))} check")
    kinds = set(protocols.get(c.proto).answers)
    for name in sorted(c.answered_by):
        try:
            netns = lab.netns_of(name)
        except ValidationError:
            raise ValidationError(f"check {c.name!r}: answered_by names {name!r}, no node or container") from None
        # the ports a DNAT may land on are the recipe's business; the container must serve the kind
        mine = [s for s in netns.servers if netns.server_name(s) == name and s.kind in kinds]
        if not relayed:
            mine = [s for s in mine if s.port == c.port]
            if dst_node is not None and netns.name != dst_node.name:
                raise ValidationError(f"check {c.name!r}: {name} is not in {dst_node.name}'s netns, and "
                                      f"{c.dst} is no virtual address, so it cannot answer")
        if not mine:
            raise ValidationError(f"check {c.name!r}: answered_by {name}, which serves no "
                                  f"{'/'.join(sorted(kinds))}" + ("" if relayed else f" on port {c.port}"))


# -- JSON ---------------------------------------------------------------------------------------

def to_dict(c: ReachCheck) -> dict[str, Any]:
    d = dataclasses.asdict(c)
    if d.get("answered_by") is not None:
        d["answered_by"] = sorted(d["answered_by"])  # JSON has no sets
    for f in ("dropped_by", "counted_by"):
        if d[f] is not None:
            d[f] = tuple(d[f])  # the plain 4-tuple, as recipes write it
    return d


def from_dict(d: dict[str, Any], make) -> ReachCheck:
    check = make(ReachCheck, d)
    if check.answered_by is not None:
        if not all(isinstance(x, str) for x in check.answered_by):
            raise TypeError("answered_by holds a non-string")
        check = dataclasses.replace(check, answered_by=frozenset(check.answered_by))
    return check


# -- what explains it, what it needs ------------------------------------------------------------

def involved(lab: Lab, c: ReachCheck) -> list[str]:
    """Its source, the owner of its destination, and the host node (forwarding rules)."""
    from nsbox.model import HOST

    target = lab.target(c.src, c.dst, c.proto, c.port, c.family)
    return [lab.netns_of(c.src).name, *([target.node.name] if target.node else []), HOST]


def netns(lab: Lab, c: ReachCheck) -> set[str]:
    """Where probes leave from, whom they target, whose rule counters are read."""
    out = {lab.netns_of(c.src).name}
    target = lab.target(c.src, c.dst, c.proto, c.port, c.family)
    if target.node is not None:  # None: a virtual address only rules answer for
        out.add(target.node.name)
    for ref in (c.dropped_by, c.counted_by):
        if ref:
            out.add(ref.node)
    return out


def prepare_external(built: Any, c: ReachCheck, rules: dict[str, str]) -> None:
    """In namespaces nsbox did not build: the destination address is really there, and a
    dropped_by rule is one of the real rules given."""
    _check_target(built, c)
    if c.dropped_by and c.dropped_by.node in rules:
        check_rule_exists(built.lab, c)


def check_rule_exists(lab: Lab, c: ReachCheck) -> None:
    """UsageError unless the lab (its firewall the real rules) has C's dropped_by rule."""
    from nsbox.errors import UsageError

    ref = c.dropped_by
    if not ref.exists(lab, family_of(lab, c)):
        raise UsageError(f"check {c.name!r}: the real {ref.node} has no {ref.describe()}")


def _check_target(built: Any, c: ReachCheck) -> None:
    """A probe's destination must be an address of the namespace it names, in the real
    system too (Docker hands out addresses itself): binding to it there proves it."""
    import socket

    from nsbox.errors import UsageError
    from nsbox.host import netns as kns

    from nsbox.validate import probe_target

    lab = built.lab
    try:  # the same rule as `nsbox run` and the pytest plugin: one function decides
        target = probe_target(lab, c.src, c.dst, c.proto, c.port, c.family, c.query)
    except ValidationError as e:
        raise UsageError(f"check {c.name!r}: {e}") from None
    if target.node is None or target.loopback or lab.virtual_for(target, c.proto, c.port) is not None:
        return  # loopback, or an address or port that only rules answer for
    ip, node = target.ip, target.node.name
    s = kns.socket_in(built.path(node), socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
    except OSError:
        raise UsageError(f"check {c.name!r}: {node} has no address {ip} in {built.path(node)}: "
                         f"the real system numbered it differently") from None
    finally:
        s.close()


def run(v: Verification, checks: list[ReachCheck]) -> dict:
    from nsbox.verify.verifier import run_reach

    return run_reach(v, checks)


KIND = register(CheckKind("reach", ReachCheck, validate, run, involved, phase=TRAFFIC, netns=netns,
                          prepare_external=prepare_external, to_dict=to_dict, from_dict=from_dict,
                          builder="expect", build=expect))
