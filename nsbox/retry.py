"""The one bounded retry loop: try, and try again while another try still fits the deadline.

Every "probe again until the expected result or the deadline" in nsbox is this loop
(the verifier's reach, deny and link checks, the pytest plugin's assert_reachable, the
wait for IPv6 duplicate address detection, the waits for a process to end or appear).
`Budget` is the deadline alone, for loops that cannot hand their attempt over as a
function (the verifier's probes are generator tasks of its event loop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Budget:
    """WITHIN seconds from now; how many attempts were made in them."""

    within: float
    start: float = field(default_factory=time.monotonic)
    attempts: int = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def another(self, reserve: float = 0.0) -> bool:
        """Whether another attempt that may take RESERVE seconds still ends within the budget."""
        return self.elapsed() + reserve <= self.within


@dataclass(frozen=True)
class Tried(Generic[T]):
    value: T         # the last attempt's result
    ok: bool         # DONE(value): False = the budget ran out first
    attempts: int
    seconds: float   # from the first attempt's start to the last one's end


def until(attempt: Callable[[], T], done: Callable[[T], bool], within: float, every: float,
          reserve: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> Tried[T]:
    """Call ATTEMPT until DONE(its result), sleeping EVERY seconds between attempts, as long
    as another attempt (taking up to RESERVE seconds) still ends within WITHIN seconds.
    ATTEMPT runs at least once; an exception from it ends the loop."""
    budget = Budget(within)
    while True:
        budget.attempts += 1
        value = attempt()
        if done(value):
            return Tried(value, True, budget.attempts, budget.elapsed())
        if not budget.another(reserve):
            return Tried(value, False, budget.attempts, budget.elapsed())
        sleep(every)
