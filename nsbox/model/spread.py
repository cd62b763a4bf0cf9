"""A spread check: many connections to one Service, and how they spread over its endpoints.

`lab.expect_spread(src, service, port, probes=N, at_least=K, max_share=X)` adds N reach
checks ("NAME #1" ... "NAME #N", each a new connection from its own source port, each
recording the endpoint whose server answered it: answered_by) and one SpreadCheck over
them: it passes when at least K distinct endpoints answered and no endpoint answered more
than X of the N probes. kube-proxy's random choice (iptables `-m statistic --probability`,
nftables `numgen random mod N`) is what spreads them; a Service whose random choice is
gone (always the first endpoint) fails it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsbox.errors import ValidationError

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
