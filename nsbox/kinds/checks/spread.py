"""spread: many connections to one Service, and how they spread over its endpoints.

`lab.expect_spread(src, service, port, probes=N, at_least=K, max_share=X)` adds N reach
checks ("NAME #1" ... "NAME #N", each a new connection from its own source port, each
recording the endpoint whose server answered it: answered_by) and one SpreadCheck over
them: it passes when at least K distinct endpoints answered and no endpoint answered more
than X of the N probes. kube-proxy's random choice (iptables `-m statistic --probability`,
nftables `numgen random mod N`) is what spreads them; a Service whose random choice is
gone (always the first endpoint) fails it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.errors import ValidationError
from nsbox.kinds.checks import SUMMARY, CheckKind, Verification, register
from nsbox.verify.results import CheckResult

if TYPE_CHECKING:
    from nsbox.model.lab import Lab

MAX_PROBES = 500


@dataclass(frozen=True)
class SpreadCheck:
    name: str
    probes: tuple[str, ...]  # the names of its reach checks
    at_least: int
    max_share: float
    at_most: int | None = None  # 1: session affinity, every probe answered by one endpoint

    @property
    def expected(self) -> str:
        if self.at_most == 1:
            return f"one endpoint answered all {len(self.probes)}"
        most = f", at most {self.at_most}" if self.at_most is not None else ""
        return f"at least {self.at_least} endpoints{most}, none above {self.max_share:.0%} of {len(self.probes)}"


def expect_spread(lab: Lab, src: Any, service: Any, port: int, *, proto: str = "http", probes: int = 30,
                  at_least: int = 2, max_share: float = 1.0, answered_by: Any = None,
                  name: str | None = None, at_most: int | None = None) -> SpreadCheck:
    label = getattr(service, "label", None) or getattr(service, "name", None) or str(service)
    s = getattr(src, "name", src)
    name = name or f"spread {proto}/{port} {s}->{label}"
    if not (type(probes) is int and 2 <= probes <= MAX_PROBES):
        raise ValidationError(f"{name}: probes is 2-{MAX_PROBES}, not {probes!r}")
    if not (type(at_least) is int and 1 <= at_least <= probes):
        raise ValidationError(f"{name}: at_least is 1-{probes} (the probes), not {at_least!r}")
    if at_most is not None and not (type(at_most) is int and at_least <= at_most <= probes):
        raise ValidationError(f"{name}: at_most is {at_least}-{probes} (at_least to the probes), not {at_most!r}")
    if not (isinstance(max_share, (int, float)) and 0 < max_share <= 1):
        raise ValidationError(f"{name}: max_share is a fraction in (0, 1], not {max_share!r}")
    if answered_by is None:
        answered_by = getattr(service, "endpoints", None)
    if not answered_by:
        raise ValidationError(f"{name}: name the endpoints (answered_by=), or pass a Service that has some")
    names = []
    for i in range(1, probes + 1):
        c = lab.expect(src, service, proto, port, answered_by=answered_by, name=f"{name} #{i}")  # type: ignore[arg-type]
        names.append(c.name)
    check = SpreadCheck(name, tuple(names), at_least, float(max_share), at_most)
    lab._add_check(check)  # type: ignore[arg-type]
    return check


def validate(lab: Lab, c: SpreadCheck, reach: dict[str, Any]) -> None:
    missing = [p for p in c.probes if p not in reach]
    if missing:
        raise ValidationError(f"check {c.name!r}: its probe {missing[0]!r} is no reach check")


def run_spread(c: SpreadCheck, results: dict[str, CheckResult]) -> CheckResult:
    got = [results[p] for p in c.probes if p in results]
    by = Counter(r.answered_by for r in got if r.passed and r.answered_by)
    answered = sum(by.values())
    top, top_n = (by.most_common(1)[0] if by else (None, 0))
    share = top_n / len(c.probes)
    ok = answered == len(c.probes) and len(by) >= c.at_least and share <= c.max_share + 1e-9 and (
        c.at_most is None or len(by) <= c.at_most)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
    observed = f"{len(by)} endpoints, top {top} {share:.0%} of {len(c.probes)}"
    if answered != len(c.probes):
        observed += f"; {len(c.probes) - answered} probe(s) not answered as expected"
    first = got[0] if got else None
    return CheckResult(c.name, "spread", c.expected, observed, ok, f"answered: {counts or 'none'}",
                       src=first.src if first else None, dst=first.dst if first else None,
                       dst_ip=first.dst_ip if first else None, proto=first.proto if first else None,
                       port=first.port if first else None)


def run(v: Verification, checks: list[SpreadCheck]) -> dict[str, CheckResult]:
    return {c.name: run_spread(c, v.results) for c in checks}


def involved(lab: Lab, c: SpreadCheck) -> list[str]:
    """What explains its probes (they share source and Service)."""
    from nsbox.kinds.checks import kind_of

    probes = {x.name: x for x in lab.checks}
    first = probes.get(c.probes[0]) if c.probes else None
    return kind_of(first).involved(lab, first) if first is not None else []


KIND = register(CheckKind("spread", SpreadCheck, validate, run, involved, phase=SUMMARY,
                          netns=lambda lab, c: set(), reads=lambda c: tuple(c.probes),
                          builder="expect_spread", build=expect_spread))
