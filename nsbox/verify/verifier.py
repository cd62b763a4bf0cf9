"""Turn a lab's expectations into traffic and kernel queries, and judge them.

Reach checks run at the same time, in one thread (nsbox/verify/loop.py: each
probe a task on non-blocking sockets, at most `workers` in flight), so a lab
whose deny checks name no rule waits one probe timeout at most. A probe is
repeated only while what it observes differs from what is expected, within a
deadline, so a correct lab costs one probe per check and a wrong one is given
time to settle before it is reported.

A deny check that names its rule (`dropped_by`) is proven by that rule's packet
counter, read in the node while the probe waits: the probe ends as soon as the
counter has risen (or the probe itself ends: refused, unreachable, answered,
timed out). Those checks run one at a time after the others, so no other probe
moves the counters they read. A check with `counted_by` (any rule, any target) runs
among those too: its probe between two reads of the node's counters.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Protocol

from nsbox import retry
from nsbox.errors import KernelError
from nsbox.observe import counters
from nsbox.observe.links import operstate
from nsbox.observe import conntrack
from nsbox.kernel.realize import Realized
from nsbox.model.spread import SpreadCheck
from nsbox.model import BindCheck, ConntrackCheck, InterfacesCheck, Lab, LinkCheck, ReachCheck
from nsbox.model.checks import describe_rule
from nsbox.model.routes import NeighCheck, RouteCheck
from nsbox.model.rules import parse_rule
from nsbox.verify.loop import Loop, Wait
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
    except BaseException:
        servers.close()
        raise
    return servers


def verify(built: Built, servers: ServerSet, timing: Timing = Timing()) -> list[CheckResult]:
    lab = built.lab
    reach = [c for c in lab.checks if isinstance(c, ReachCheck)]
    concurrent = [c for c in reach if c.dropped_by is None and c.counted_by is None]
    probes: dict[str, ProbeResult] = {}
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
        results[check.name], probes[check.name] = done[check.name]
    for c in lab.checks:
        if isinstance(c, ConntrackCheck):
            results[c.name] = _run_conntrack(built, c, reach, probes)
        elif isinstance(c, LinkCheck):
            results[c.name] = _run_link(built, c, timing)
        elif isinstance(c, BindCheck):
            results[c.name] = _run_bind(built, c)
        elif isinstance(c, InterfacesCheck):
            results[c.name] = _run_interfaces(built, c)
        elif isinstance(c, RouteCheck):
            from nsbox.verify.routes import run_route
            results[c.name] = run_route(built, c)
        elif isinstance(c, NeighCheck):
            from nsbox.verify.routes import run_neigh
            results[c.name] = run_neigh(built, c)
        elif isinstance(c, SpreadCheck):
            from nsbox.verify.spread import run_spread
            results[c.name] = run_spread(c, results)
    return [results[c.name] for c in lab.checks]


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
        token = p.token
        if c.proto == "dns" and p.local:  # a DNS query carries no token: the server keys it by the peer
            token = f"dns:{p.local[0]}:{p.local[1]}"
        seen = servers.peer_for(token) if p.reachable and c.proto != "icmp" else None
        by = servers.server_for(token) if p.reachable and c.proto != "icmp" else None
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


@dataclass(frozen=True)
class _Counters:
    """A node's drop-rule packet counters, as one dropped_by check reads them."""

    read: Callable[[], dict[Hashable, int]]  # rule key -> packets, every DROP/REJECT rule and DROP policy
    wanted: Callable[[Hashable], bool]        # the rule the check names
    describe: Callable[[Hashable], str]
    what: str                                 # "deny, but no DROP rule of host counted it" says ...
    note: str = ""                            # appended to the detail


def _iptables_counters(built: Realized, c: ReachCheck, dst_ip: str, ref: tuple[str, str, str, str] | None = None,
                       only_drops: bool = True) -> _Counters:
    """REF (default: the check's dropped_by) = (node, table, chain, spec or "policy"): the
    node's rule counters (ONLY_DROPS: of its DROP/REJECT rules and DROP policies)."""
    node, table, chain, spec = ref or c.dropped_by  # type: ignore[misc]
    firewall = built.lab.nodes[node].firewall
    want = (table, chain, "policy" if spec == "policy" else parse_rule(spec).render())
    family = 6 if ":" in dst_ip else 4  # an IPv6 packet only moves ip6tables counters
    path = built.path(node)
    return _Counters(lambda: counters.rule_counters(path, firewall, built.iptables, family,  # type: ignore[arg-type]
                                                    only_drops),
                     lambda k: k == want, lambda k: describe_rule((node, *k)),  # type: ignore[misc]
                     f"{'DROP ' if only_drops else ''}rule of {node}",
                     f"; counters of {node}'s ip6tables rules" if family == 6 else "")


def _nft_counters(built: Realized, c: ReachCheck, ref: tuple[str, str, str, str] | None = None,
                  only_drops: bool = True) -> _Counters:
    """dropped_by=(node, "nft", "FAMILY TABLE CHAIN", text of the rule): the packet counter of
    that nftables rule (as `nft list ruleset` prints it in the node)."""
    from nsbox.wire import nftables

    node, _, chain, spec = ref or c.dropped_by  # type: ignore[misc]
    path = built.path(node)

    def read() -> dict[Hashable, int]:
        rules = counters.nft_rule_counters(path)
        wanted = set(nftables.matching(rules, chain, spec, only_drops))
        # a rule's key: its place and text, so a rule listed differently is a different rule
        return {(i, ch, text, i in wanted): n for i, (ch, text, n) in enumerate(rules)
                if n is not None and (not only_drops or re.search(r"\b(drop|reject)\b", text))}

    return _Counters(read, lambda k: k[3], lambda k: f"{node} nft {k[1]}: {k[2]}",  # type: ignore[index]
                     f"nftables {'drop ' if only_drops else ''}rule of {node}", f"; counters of {node}'s nftables rules")


def _run_counted(built: Realized, servers: ServerSet, c: ReachCheck, timing: Timing,
                 loop: Loop) -> tuple[CheckResult, ProbeResult]:
    """A check with counted_by: the probe as any check's (judged as usual), between two reads
    of the node's rule counters; it passes when it also moved the named rule's counter. The
    counters are the kernel's own (iptables-save -c / nft list ruleset), and only this probe
    runs meanwhile."""
    target = built.lab.target(c.src, c.dst, c.proto, c.port, c.family)
    ref = c.counted_by
    counters = (_nft_counters(built, c, ref, only_drops=False) if ref[1] == "nft"  # type: ignore[index]
                else _iptables_counters(built, c, target.ip, ref, only_drops=False))
    before = counters.read()
    res, p = loop.run([_reach_task(built, servers, c, timing)], 1)[0]
    after = counters.read()
    rose = [k for k, v in after.items() if v > before.get(k, 0)]
    counted = any(counters.wanted(k) for k in rose)
    if counted:
        observed = f"{res.observed}, counted by {describe_rule(ref)}"  # type: ignore[arg-type]
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
    counters = _nft_counters(built, c) if c.dropped_by[1] == "nft" else _iptables_counters(built, c, dst_ip)  # type: ignore[index]
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


def _run_link(built: Realized, c: LinkCheck, timing: Timing) -> CheckResult:
    """Read IFACE's operstate from the kernel; re-read while it differs, within the
    deadline: carrier changes reach operstate through the kernel's linkwatch, up to
    a second later."""
    tried = retry.until(lambda: operstate(built.path(c.node), c.iface), lambda state: state == c.state,
                        within=timing.deadline, every=timing.interval, reserve=timing.interval)
    state = tried.value
    return CheckResult(c.name, "link", c.expected, f"state {state}", tried.ok,
                       f"{c.node}: {c.iface} operstate {state}", tried.attempts,
                       round(tried.seconds * 1000, 1), node=c.node)


def _run_bind(built: Realized, c: BindCheck) -> CheckResult:
    """Try to listen as CONTAINER's server would (wildcard address, SO_REUSEADDR for tcp):
    the kernel must refuse with EADDRINUSE while HELD_BY's server has the port."""
    import errno
    import socket

    from nsbox.host import netns

    start = time.monotonic()
    node = built.lab.netns_of(c.container).name
    s = netns.socket_in(built.path(node), socket.AF_INET, socket.SOCK_DGRAM if c.proto == "udp"
                        else socket.SOCK_STREAM)
    try:
        if c.proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", c.port))
        if c.proto == "tcp":
            s.listen(1)
        observed, detail = "port free", f"{c.container}: listening on {c.proto}/{c.port} worked"
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            observed = f"port taken by {c.held_by}"
            detail = (f"{c.container}: bind {c.proto} 0.0.0.0:{c.port} in netns {node}: "
                      f"EADDRINUSE (Address already in use); {c.held_by}'s server holds it")
        else:
            observed, detail = f"bind failed: {e.strerror}", f"{c.container}: {e}"
    finally:
        s.close()
    return CheckResult(c.name, "bind", c.expected, observed, observed == c.expected, detail,
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node,
                       proto=c.proto, port=c.port)


def _run_interfaces(built: Realized, c: InterfacesCheck) -> CheckResult:
    """List the netns's interfaces with if_nameindex(3) from inside it (netlink in that netns)."""
    import socket

    from nsbox.host import netns

    start = time.monotonic()
    node = built.lab.netns_of(c.node).name
    with netns.entered(built.path(node)):
        found = sorted(name for _, name in socket.if_nameindex())
    observed = "interfaces " + ", ".join(found)
    return CheckResult(c.name, "interfaces", c.expected, observed, observed == c.expected,
                       f"{c.node}: netns {node} has {len(found)} interface(s)",
                       duration_ms=round((time.monotonic() - start) * 1000, 1), node=node)


def _judge(c: ReachCheck, p: ProbeResult, seen: tuple[str, int] | None, by: str | None) -> tuple[str, bool]:
    if not p.reachable:
        if c.deny is not None:
            return f"deny ({p.kind or p.detail})", not c.allow and p.kind == c.deny
        return "deny", not c.allow
    if c.proto == "dns":
        got = f"answer {p.body}" if p.body else ("NXDOMAIN" if p.detail.startswith("NXDOMAIN") else "no A record")
        return got, got == c.expected
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


def _run_conntrack(built: Realized, c: ConntrackCheck, reach: list[ReachCheck],
                   probes: dict[str, ProbeResult]) -> CheckResult:
    start = time.monotonic()
    of = next(r for r in reach if r.name == c.of)
    p = probes[c.of]
    if of.proto == "icmp":
        return _run_conntrack_icmp(built, c, of, p, start)
    if not p.reachable or p.local is None:
        return CheckResult(c.name, "conntrack", c.expected, "not checked", False,
                           f"{c.of!r} did not connect, so there is no connection to look up", **_conn_fields(built, c, of, p))
    dst_ip = built.lab.target(of.src, of.dst, of.proto, of.port, of.family).ip
    l4 = "udp" if of.proto == "udp" else "tcp"
    entries = conntrack.dump(built.path(c.node), 6 if ":" in dst_ip else 4)  # the probe's family's table
    match = [e for e in entries if e.proto == l4 and _same_ip(e.orig.src, p.local[0]) and e.orig.sport == p.local[1]
             and _same_ip(e.orig.dst, dst_ip) and e.orig.dport == of.port]
    ms = round((time.monotonic() - start) * 1000, 1)
    if not match:
        return CheckResult(c.name, "conntrack", c.expected, "no entry", False,
                           f"{len(entries)} entries in {c.node}, none for {l4} {_hostport(*p.local)} -> "
                           f"{_hostport(dst_ip, of.port)}", duration_ms=ms, **_conn_fields(built, c, of, p))
    e = match[0]
    src = ""
    if c.reply_src:
        src = f" from {e.reply.src}" + (f":{e.reply.sport}" if c.reply_sport else "")
    observed = f"entry, reply{src} to {e.reply.dst}"
    # addresses compared as addresses: fd00:0::1 in a recipe is conntrack's fd00::1
    passed = _same_ip(e.reply.dst, c.reply_dst) and (not c.reply_src or (
        _same_ip(e.reply.src, c.reply_src) and (not c.reply_sport or e.reply.sport == c.reply_sport)))
    return CheckResult(c.name, "conntrack", c.expected, observed, passed,
                       e.render(), duration_ms=ms, **_conn_fields(built, c, of, p))


def _run_conntrack_icmp(built: Realized, c: ConntrackCheck, of: ReachCheck, p: ProbeResult,
                        start: float) -> CheckResult:
    """An icmp check's entry: the echo request's tuple (type 8, or 128 for ICMPv6, code 0, the
    probe's id) to the probed address, as `conntrack -L -p icmp` prints it."""
    if not p.reachable or p.icmp_id is None:
        return CheckResult(c.name, "conntrack", c.expected, "not checked", False,
                           f"{c.of!r} got no echo reply, so there is no exchange to look up",
                           **_conn_fields(built, c, of, p))
    dst_ip = built.lab.target(of.src, of.dst, of.proto, of.port, of.family).ip
    v6 = ":" in dst_ip
    entries = conntrack.dump(built.path(c.node), 6 if v6 else 4)
    request = (128 if v6 else 8, 0, p.icmp_id)
    match = [e for e in entries if e.proto == ("icmpv6" if v6 else "icmp") and e.orig.icmp == request
             and _same_ip(e.orig.dst, dst_ip)]
    ms = round((time.monotonic() - start) * 1000, 1)
    if not match:
        return CheckResult(c.name, "conntrack", c.expected, "no entry", False,
                           f"{len(entries)} entries in {c.node}, none for icmp{'v6' if v6 else ''} "
                           f"dst={dst_ip} type={request[0]} code=0 id={p.icmp_id}",
                           duration_ms=ms, **_conn_fields(built, c, of, p))
    e = match[0]
    observed = f"entry, reply{f' from {e.reply.src}' if c.reply_src else ''} to {e.reply.dst}"
    passed = _same_ip(e.reply.dst, c.reply_dst) and (not c.reply_src or _same_ip(e.reply.src, c.reply_src))
    return CheckResult(c.name, "conntrack", c.expected, observed, passed, e.render(), duration_ms=ms,
                       **_conn_fields(built, c, of, p))


def _hostport(ip: str, port: int | None) -> str:
    """ip:port as URLs write it: an IPv6 address in brackets ([fd00::2]:80)."""
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _same_ip(a: str, b: str) -> bool:
    """One address however it is written (fd00:0::1 and fd00::1 are the same)."""
    import ipaddress

    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _conn_fields(built: Realized, c: ConntrackCheck, of: ReachCheck, p: ProbeResult) -> dict:
    """The structured fields of a conntrack check: those of the connection it looks up."""
    target = built.lab.target(of.src, of.dst, of.proto, of.port, of.family)
    return {"src": of.src, "dst": target.label, "dst_ip": target.ip, "proto": of.proto, "port": of.port,
            "local": Endpoint(*p.local) if p.local else None, "node": c.node}
