"""Turn a lab's expectations into traffic and kernel queries, and judge them.

verify() dispatches on the check kinds (nsbox/kinds/checks/, one module each): every
kind's run function, traffic first, then what reads the state it left, then verdicts
over other checks. The reach kind's run is the traffic engine below (run_reach).

Reach checks run at the same time, in one thread (nsbox/verify/loop.py: each
probe a task on non-blocking sockets, at most `workers` in flight), so a lab
whose deny checks name no rule waits one probe timeout at most. A probe is
repeated only while what it observes differs from what is expected, within a
deadline, so a correct lab costs one probe per check and a wrong one is given
time to settle before it is reported.

A deny check that names its rule (`dropped_by`, a RuleRef: nsbox/kinds/ruleref.py, which
reads the counters) is proven by that rule's packet counter, read in the node while the
probe waits: the probe ends as soon as the counter has risen (or the probe itself ends:
refused, unreachable, answered, timed out). Those checks run one at a time after the others, so no other probe
moves the counters they read. A check with `counted_by` (any rule, any target) runs
among those too: its probe between two reads of the node's counters.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Hashable, Protocol

from nsbox import retry
from nsbox.errors import KernelError
from nsbox.kernel.realize import Realized
from nsbox.kinds.checks import KINDS, Verification, kind_of
from nsbox.kinds.checks._util import hostport as _hostport, same_ip as _same_ip
from nsbox.kinds.checks.reach import family_of
from nsbox.kinds.ruleref import Counters
from nsbox.model import Lab, ReachCheck
from nsbox.verify.loop import Loop, Wait
from nsbox.kinds import protocols
from nsbox.verify.probes import ProbeResult, Sockets, probe_task
from nsbox.verify.results import CheckResult, Endpoint
from nsbox.verify.servers import ServerSet


class Built(Protocol):
    """What the verifier needs of a built lab: a Realized, or namespaces someone else
    built (verify/external.py: the real dockerd's)."""

    lab: Lab
    iptables: str  # the backend the rules are in: nft or legacy

    def path(self, node: str) -> str: ...


@dataclass(frozen=True)
class Timing:
    probe_timeout: float = 1.0   # one connect / echo wait; what an unproven deny costs
    deadline: float = 4.0        # how long to keep re-probing while observed != expected
    interval: float = 0.2
    workers: int = 32            # probes in flight at once (one thread: see nsbox/verify/loop.py)
    counter_poll: float = 0.002  # between two reads of a dropped_by rule's counter while its probe waits


def start_servers(built: Built) -> ServerSet:
    servers = ServerSet()
    try:
        for node in built.lab.nodes.values():
            for s in node.servers:
                try:
                    servers.listen(node.server_name(s), built.path(node.name), node.primary_ip or "0.0.0.0",
                                   s.kind, s.port, s.address, s.records)
                except OSError as e:
                    raise KernelError(f"{node.name}: cannot serve {s.kind} on port {s.port}: {e.strerror}") from None
        for name in getattr(built.lab, "sandboxes", ()):
            servers.hold(name, built.path(name))
        servers.start()
        for node in built.lab.nodes.values():
            for p in node.proxies:
                servers.start_proxy(node.name, built.path(node.name), p)
        servers.wait_proxies()
    except BaseException:
        servers.close()
        raise
    return servers


def verify(built: Built, servers: ServerSet, timing: Timing = Timing()) -> list[CheckResult]:
    """Every check, by its kind's run function (nsbox/kinds/checks/): traffic first, then the
    kernel state it left, then verdicts over other checks' results. Results in the lab's order."""
    lab = built.lab
    v = Verification(built, servers, timing)
    by_kind: dict[str, list] = {}
    for c in lab.checks:
        by_kind.setdefault(kind_of(c).name, []).append(c)
    for kind in sorted((KINDS[k] for k in by_kind), key=lambda k: k.phase):
        v.results.update(kind.run(v, by_kind[kind.name]))
    return [v.results[c.name] for c in lab.checks]


def run_reach(v: Verification, reach: list[ReachCheck]) -> dict[str, CheckResult]:
    """The reach checks (nsbox/kinds/checks/reach.py): those naming no rule all at once, then
    the rule-counter ones one at a time. Their probes go to V.probes (conntrack reads them)."""
    built, servers, timing = v.built, v.servers, v.timing
    concurrent = [c for c in reach if c.dropped_by is None and c.counted_by is None]
    loop = Loop()
    if servers.records_fd() >= 0:
        loop.add_reader(servers.records_fd(), servers.drain)
    sockets = Sockets()
    targets = _Targets(built.lab)
    try:
        outcomes = loop.run([_reach_task(built, servers, c, timing, sockets, targets) for c in concurrent],
                            timing.workers)
        done = dict(zip((c.name for c in concurrent), outcomes))
        # Checks that read rule counters run one at a time: no other probe may move them.
        for c in reach:
            if c.dropped_by is not None:
                done[c.name] = _run_dropped(built, c, timing, loop)
            elif c.counted_by is not None:
                done[c.name] = _run_counted(built, servers, c, timing, loop)
    finally:
        loop.close()
        sockets.close()
    results: dict[str, CheckResult] = {}
    for check in reach:
        results[check.name], v.probes[check.name] = done[check.name]
    return results


def _src_path(built: Realized, src: str) -> str:
    """The netns a probe from SRC (a node or a container) leaves from."""
    return built.path(built.lab.netns_of(src).name)


class _Targets:
    """lab.target() once per destination: a node's address is parsed from its CIDR on every
    call (at 50 nodes, all pairs: 13 % of the verifier's time)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cache: dict[tuple, object] = {}

    def __call__(self, c: ReachCheck):
        named = c.dst in self.lab.nodes or c.dst in self.lab.containers  # then SRC does not matter
        key = (None if named else c.src, c.dst, c.proto, c.port, c.family)
        t = self.cache.get(key)
        if t is None:
            t = self.cache[key] = self.lab.target(c.src, c.dst, c.proto, c.port, c.family)
        return t


def _reach_task(built: Realized, servers: ServerSet, c: ReachCheck, timing: Timing,
                sockets: Sockets | None = None, targets: _Targets | None = None):
    """A task for the loop: probe until observed == expected or the deadline; -> (CheckResult, ProbeResult)."""
    target = targets(c) if targets else built.lab.target(c.src, c.dst, c.proto, c.port, c.family)
    dst_ip = target.ip
    itself = _source_holds(built, c, target)
    src_path = _src_path(built, c.src)
    budget = retry.Budget(timing.deadline)
    while True:
        budget.attempts += 1
        p = yield from probe_task(c.proto, src_path, dst_ip, c.port, timing.probe_timeout, c.query, sockets,
                                  c.size, c.df)
        proto = protocols.get(c.proto)
        token = proto.token_of(p) if proto.token_of else p.token  # dns: the server keys it by the peer
        seen = servers.peer_for(token) if p.reachable and proto.records_peer else None
        by = servers.server_for(token) if p.reachable and proto.records_peer else None
        observed, passed = _judge(c, p, seen, by)
        if itself and p.reachable:  # the source's own stack answered: nothing reached DST
            observed, passed = "answered by the source itself", False
        if passed or not budget.another(timing.probe_timeout):
            break
        yield Wait(None, 0, time.monotonic() + timing.interval)
    where = f" to {_hostport(dst_ip, c.port)}"
    detail = f"{p.detail}{where}"
    if p.local:
        detail += f" from {_hostport(*p.local)}"
    if by:
        detail += f"; answered by {by}"
    if seen:
        detail += f"; server saw {_hostport(*seen)}"
    return CheckResult(c.name, "reach", c.expected, observed, passed, detail, budget.attempts,
                       round(budget.elapsed() * 1000, 1),
                       src=c.src, dst=target.label, dst_ip=dst_ip, proto=c.proto, port=c.port,
                       local=Endpoint(*p.local) if p.local else None, seen=Endpoint(*seen) if seen else None,
                       answered_by=by), p


def _source_holds(built: Realized, c: ReachCheck, target) -> bool:
    """Whether the kernel has the target address local in the probe's source netns (a bind to
    it succeeds), when the check's destination is another netns: then any answer is the
    source's own (issue 12 item 22; validation refuses it unless the address is shared)."""
    import socket

    from nsbox.host import netns

    src = built.lab.netns_of(c.src)
    if target.node is None or target.loopback or target.node.name == src.name:
        return False
    if not any(a.ip == target.ip for a in src.addresses):  # (a bind could also pass by ip_nonlocal_bind)
        return False
    family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
    with netns.socket_in(_src_path(built, c.src), family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((target.ip, 0))
        except OSError:
            return False
    return True


def _run_counted(built: Realized, servers: ServerSet, c: ReachCheck, timing: Timing,
                 loop: Loop) -> tuple[CheckResult, ProbeResult]:
    """A check with counted_by: the probe as any check's (judged as usual), between two reads
    of the node's rule counters; it passes when it also moved the named rule's counter. The
    counters are the kernel's own (iptables-save -c / nft list ruleset), and only this probe
    runs meanwhile."""
    ref = c.counted_by
    counters: Counters = ref.counters(built, family_of(built.lab, c), only_drops=False)
    before = counters.read()
    res, p = loop.run([_reach_task(built, servers, c, timing)], 1)[0]
    after = counters.read()
    rose = [k for k, v in after.items() if v > before.get(k, 0)]
    counted = any(counters.wanted(k) for k in rose)
    if counted:
        observed = f"{res.observed}, counted by {ref.describe()}"
    elif rose:
        observed = f"{res.observed}, not counted by it: counted by " + "; ".join(counters.describe(k) for k in rose)
    else:
        observed = f"{res.observed}, but no {counters.what} counted it"
    return dataclasses.replace(res, expected=c.expected, observed=observed, passed=res.passed and counted,
                               detail=res.detail + counters.note,
                               duration_ms=round(res.duration_ms, 1)), p


def _run_dropped(built: Realized, c: ReachCheck, timing: Timing, loop: Loop) -> tuple[CheckResult, ProbeResult]:
    """A deny check that names the rule that must drop it: the kernel's packet counters of
    the node's drop rules and policies, read before the probe and then every
    `counter_poll` while it waits. The probe ends as soon as the named rule has counted
    it; else when it ends by itself (answered, refused, unreachable, timed out)."""
    target = built.lab.target(c.src, c.dst, c.proto, c.port, c.family)
    dst_ip = target.ip
    counters: Counters = c.dropped_by.counters(built, family_of(built.lab, c), only_drops=True)
    src_path = _src_path(built, c.src)
    budget = retry.Budget(timing.deadline)
    while True:
        budget.attempts += 1
        before = counters.read()
        sent = time.monotonic()
        h = loop.start(probe_task(c.proto, src_path, dst_ip, c.port, timing.probe_timeout, size=c.size, df=c.df))
        rose: list[Hashable] = []
        counted_ms = None
        while not h.done:
            now = counters.read()
            rose = [k for k, v in now.items() if v > before.get(k, 0)]
            loop.step(0)  # whatever the kernel did meanwhile (an answer) counts first
            # a check naming the deny's kind waits for the probe's own end: that shows the kind
            if c.deny is None and any(counters.wanted(k) for k in rose) and not h.done:
                counted_ms = (time.monotonic() - sent) * 1000
                loop.cancel(h)
                break
            loop.step(timing.counter_poll)
        if counted_ms is None:
            after = counters.read()
            rose = [k for k, v in after.items() if v > before.get(k, 0)]
            p = h.result
        else:
            p = ProbeResult(False, "no answer", "")
        deny = f"deny ({p.kind or p.detail})" if c.deny else "deny"
        if p.reachable:
            observed = "allow"
        elif rose:
            observed = f"{deny}, dropped by " + "; ".join(counters.describe(k) for k in rose)
        else:
            observed = f"{deny}, but no {counters.what} counted it"
        passed = not p.reachable and any(counters.wanted(k) for k in rose) and (c.deny is None or p.kind == c.deny)
        if passed or not budget.another(timing.probe_timeout):
            break
        loop_sleep(loop, timing.interval)
    detail = f"{p.detail} to {_hostport(dst_ip, c.port)}"
    if counted_ms is not None:
        detail += (f"; the rule counted the packet within {counted_ms:.0f} ms "
                   f"(the {timing.probe_timeout:g} s timeout was not waited out)")
    detail += counters.note
    return CheckResult(c.name, "reach", c.expected, observed, passed, detail, budget.attempts,
                       round(budget.elapsed() * 1000, 1),
                       src=c.src, dst=target.label, dst_ip=dst_ip, proto=c.proto, port=c.port,
                       local=Endpoint(*p.local) if p.local else None), p


def loop_sleep(loop: Loop, seconds: float) -> None:
    """Sleep, still serving the loop's readers (the servers' record pipe)."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        loop.step(left)


def _judge(c: ReachCheck, p: ProbeResult, seen: tuple[str, int] | None, by: str | None) -> tuple[str, bool]:
    if not p.reachable:
        if c.deny is not None:
            return f"deny ({p.kind or p.detail})", not c.allow and p.kind == c.deny
        return "deny", not c.allow
    proto = protocols.get(c.proto)
    if proto.judge is not None:  # dns: the answer, not the reach
        return proto.judge(c, p)
    if c.seen_from is None and c.answered_by is None:
        return "allow", c.allow
    parts, passed = [], c.allow
    if c.answered_by is not None:
        parts.append(f"answered by {by}" if by else "answerer not recorded")
        passed = passed and by in c.answered_by
    if c.seen_from is not None:
        parts.append(f"seen from {seen[0]}" if seen else "source not recorded")
        passed = passed and seen is not None and any(_same_ip(seen[0], a) for a in c.seen_froms)
    return "allow, " + ", ".join(parts), passed
