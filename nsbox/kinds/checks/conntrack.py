"""conntrack: NODE's conntrack table holds the connection a reach check made, with the reply
tuple it expects (where NAT sent it): read with a conntrack dump after the traffic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.kinds import protocols
from nsbox.errors import ValidationError
from nsbox.kinds.checks import CheckKind, Verification, register
from nsbox.kinds.checks._util import hostport, same_ip
from nsbox.verify.results import CheckResult, Endpoint

if TYPE_CHECKING:
    from nsbox.model.lab import Lab


@dataclass(frozen=True)
class ConntrackCheck:
    """NODE's conntrack table holds the connection made by check OF, and its
    reply tuple is addressed to REPLY_DST (the NAT'd source)."""

    name: str
    node: str
    of: str
    reply_dst: str
    # DNAT: the reply comes from this address (and port), the endpoint the DNAT chose
    reply_src: str | None = None
    reply_sport: int | None = None

    @property
    def expected(self) -> str:
        src = ""
        if self.reply_src:
            src = f" from {self.reply_src}" + (f":{self.reply_sport}" if self.reply_sport else "")
        return f"entry, reply{src} to {self.reply_dst}"


def expect_conntrack(lab: Lab, node: Any, of: Any, reply_dst: str, name: str | None = None, *,
                     reply_src: str | None = None, reply_sport: int | None = None) -> ConntrackCheck:
    """lab.expect_conntrack (documented there)."""
    from nsbox.model.lab import _name

    node = _name(node)
    check = ConntrackCheck(node=node, of=of.name, reply_dst=reply_dst, reply_src=reply_src,
                           reply_sport=reply_sport, name=name or f"conntrack {node}: {of.name}")
    lab._add_check(check)
    return check


def validate(lab: Lab, c: ConntrackCheck, reach: dict[str, Any]) -> None:
    if c.node not in lab.nodes:
        raise ValidationError(f"check {c.name!r}: unknown node {c.node!r}")
    of = reach.get(c.of)
    if of is None or not protocols.get(of.proto).conntrack or not of.allow:
        raise ValidationError(f"check {c.name!r}: {c.of!r} is not an allowed "
                              f"{'/'.join(protocols.where(lambda p: p.conntrack))} check")
    if not protocols.get(of.proto).needs_port and c.reply_sport is not None:
        raise ValidationError(f"check {c.name!r}: an ICMP entry has no ports: reply_sport does not apply")
    lab.resolve(c.reply_dst)
    if c.reply_src is not None:
        lab.resolve(c.reply_src)
    if c.reply_sport is not None and not (type(c.reply_sport) is int and 1 <= c.reply_sport <= 65535):
        raise ValidationError(f"check {c.name!r}: reply_sport {c.reply_sport!r} out of range 1-65535")


def _of(lab: Lab, c: ConntrackCheck):
    return next(x for x in lab.checks if x.name == c.of)


def involved(lab: Lab, c: ConntrackCheck) -> list[str]:
    from nsbox.kinds.checks import kind_of

    of = _of(lab, c)
    return [c.node, *kind_of(of).involved(lab, of)]


def run(v: Verification, checks: list[ConntrackCheck]) -> dict[str, CheckResult]:
    return {c.name: _run(v.built, c, _of(v.built.lab, c), v.probes[c.of]) for c in checks}


def _run(built, c: ConntrackCheck, of, p) -> CheckResult:
    from nsbox.observe import conntrack

    start = time.monotonic()
    if protocols.get(of.proto).transport is None:  # icmp: no ports, an echo id
        return _run_icmp(built, c, of, p, start)
    if not p.reachable or p.local is None:
        return CheckResult(c.name, "conntrack", c.expected, "not checked", False,
                           f"{c.of!r} did not connect, so there is no connection to look up", **_fields(built, c, of, p))
    dst_ip = built.lab.target(of.src, of.dst, of.proto, of.port, of.family).ip
    l4 = protocols.get(of.proto).transport
    entries = conntrack.dump(built.path(c.node), 6 if ":" in dst_ip else 4)  # the probe's family's table
    match = [e for e in entries if e.proto == l4 and same_ip(e.orig.src, p.local[0]) and e.orig.sport == p.local[1]
             and same_ip(e.orig.dst, dst_ip) and e.orig.dport == of.port]
    ms = round((time.monotonic() - start) * 1000, 1)
    if not match:
        return CheckResult(c.name, "conntrack", c.expected, "no entry", False,
                           f"{len(entries)} entries in {c.node}, none for {l4} {hostport(*p.local)} -> "
                           f"{hostport(dst_ip, of.port)}", duration_ms=ms, **_fields(built, c, of, p))
    e = match[0]
    src = ""
    if c.reply_src:
        src = f" from {e.reply.src}" + (f":{e.reply.sport}" if c.reply_sport else "")
    observed = f"entry, reply{src} to {e.reply.dst}"
    # addresses compared as addresses: fd00:0::1 in a recipe is conntrack's fd00::1
    passed = same_ip(e.reply.dst, c.reply_dst) and (not c.reply_src or (
        same_ip(e.reply.src, c.reply_src) and (not c.reply_sport or e.reply.sport == c.reply_sport)))
    return CheckResult(c.name, "conntrack", c.expected, observed, passed,
                       e.render(), duration_ms=ms, **_fields(built, c, of, p))


def _run_icmp(built, c: ConntrackCheck, of, p, start: float) -> CheckResult:
    """An icmp check's entry: the echo request's tuple (type 8, or 128 for ICMPv6, code 0, the
    probe's id) to the probed address, as `conntrack -L -p icmp` prints it."""
    from nsbox.observe import conntrack

    if not p.reachable or p.icmp_id is None:
        return CheckResult(c.name, "conntrack", c.expected, "not checked", False,
                           f"{c.of!r} got no echo reply, so there is no exchange to look up",
                           **_fields(built, c, of, p))
    dst_ip = built.lab.target(of.src, of.dst, of.proto, of.port, of.family).ip
    v6 = ":" in dst_ip
    entries = conntrack.dump(built.path(c.node), 6 if v6 else 4)
    request = (128 if v6 else 8, 0, p.icmp_id)
    match = [e for e in entries if e.proto == ("icmpv6" if v6 else "icmp") and e.orig.icmp == request
             and same_ip(e.orig.dst, dst_ip)]
    ms = round((time.monotonic() - start) * 1000, 1)
    if not match:
        return CheckResult(c.name, "conntrack", c.expected, "no entry", False,
                           f"{len(entries)} entries in {c.node}, none for icmp{'v6' if v6 else ''} "
                           f"dst={dst_ip} type={request[0]} code=0 id={p.icmp_id}",
                           duration_ms=ms, **_fields(built, c, of, p))
    e = match[0]
    observed = f"entry, reply{f' from {e.reply.src}' if c.reply_src else ''} to {e.reply.dst}"
    passed = same_ip(e.reply.dst, c.reply_dst) and (not c.reply_src or same_ip(e.reply.src, c.reply_src))
    return CheckResult(c.name, "conntrack", c.expected, observed, passed, e.render(), duration_ms=ms,
                       **_fields(built, c, of, p))


def _fields(built, c: ConntrackCheck, of, p) -> dict:
    """The structured fields of a conntrack check: those of the connection it looks up."""
    target = built.lab.target(of.src, of.dst, of.proto, of.port, of.family)
    return {"src": of.src, "dst": target.label, "dst_ip": target.ip, "proto": of.proto, "port": of.port,
            "local": Endpoint(*p.local) if p.local else None, "node": c.node}


KIND = register(CheckKind("conntrack", ConntrackCheck, validate, run, involved,
                          netns=lambda lab, c: {c.node}, reads=lambda c: (c.of,),
                          builder="expect_conntrack", build=expect_conntrack))
