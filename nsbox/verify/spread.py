"""The verdict of a SpreadCheck (nsbox/model/spread.py) from its probes' answered_by."""

from __future__ import annotations

from collections import Counter

from nsbox.model.spread import SpreadCheck
from nsbox.verify.results import CheckResult


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
