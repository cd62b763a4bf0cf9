"""Verdicts, as the reports read them.

The JSON report (`--format json`, schema_version 1) is these dataclasses as
they are; every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Endpoint:
    """An address and port as one side of a connection saw it."""

    ip: str
    port: int


@dataclass
class CheckResult:
    """One check.

    name         the check's name, unique within its recipe ("tcp/7 c1->c2")
    kind         the check's kind, one module each in nsbox/kinds/checks/ (KINDS): "reach"
                 (traffic was sent), "conntrack" (a conntrack table was read), "link" (an
                 interface's operstate was read), "bind" (a listen was tried), "interfaces" (a
                 netns's interfaces were listed), "route", "neigh", "spread", "listening", ...
    expected     what the recipe expects, as text: "allow", "deny", "allow, seen from IP",
                 "entry, reply to IP"
    observed     what happened, in the same words ("deny", "allow, seen from IP", "no entry",
                 "not checked", ...)
    passed       observed agrees with expected
    detail       one line for people: how the probe ended, addresses, the conntrack entry
    attempts     probes sent (more than 1 only while observed differed from expected)
    duration_ms  time spent on this check, probes and waits included
    artifacts    files that explain a failure (with --artifacts), else []

    Structured fields (schema_version 1; null where they do not apply):
    src          the node the probe left from (for conntrack: of the connection looked up)
    dst          the node that owns the destination address
    dst_ip       the address the probe targeted
    proto        the probe protocol (nsbox/kinds/protocols/: icmp, tcp, udp, http, dns, sctp)
    port         the destination port (null for icmp)
    local        {"ip", "port"}: the source address and port the probe's socket used
                 (null for icmp, and when the connection did not happen)
    seen         {"ip", "port"}: the peer address the server saw for this very probe
                 (differs from local when NAT rewrote the source; null when not recorded)
    node         conntrack checks: the node whose conntrack table was read; link checks: the
                 interface's node
    answered_by  the container whose server took this very probe (null when not recorded)
    """

    name: str
    kind: str  # a name of nsbox.kinds.checks.KINDS
    expected: str
    observed: str
    passed: bool
    detail: str = ""
    attempts: int = 1
    duration_ms: float = 0.0
    artifacts: list[str] = field(default_factory=list)  # files that explain a failure (--artifacts)
    src: str | None = None
    dst: str | None = None
    dst_ip: str | None = None
    proto: str | None = None
    port: int | None = None
    local: Endpoint | None = None
    seen: Endpoint | None = None
    node: str | None = None
    answered_by: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RecipeResult:
    """One recipe's run.

    recipe       the recipe's name
    status       "pass", "fail" (a check failed, or `error` is set) or "skip"
    duration_s   wall time of the recipe, feature probes to teardown (a --then command excluded)
    skip_reason  why a skipped recipe could not run here (a missing kernel feature or tool)
    error        a build, kernel or teardown error that stopped the recipe, else null
    description  the recipe's one-line description
    checks       the CheckResults, in the recipe's order
    namespaces   node -> the netns name it had while the lab existed
    machines     machine -> the nodes it holds (lab.machine), {} when the lab declares none
    build_ms, teardown_ms, verify_ms  time to realize, to tear down, to run the checks
    matrices     all-pairs truth tables (nsbox/verify/matrix.py tables())
    artifacts_dir  where --artifacts put this run's files, else null
    then_status  the exit status of the --then command (128+N if signal N ended it), else null
    """

    recipe: str
    status: Status
    duration_s: float = 0.0
    skip_reason: str | None = None
    error: str | None = None  # a build or kernel error that stopped the recipe
    description: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # node -> netns name while it existed
    machines: dict[str, list[str]] = field(default_factory=dict)  # machine -> its nodes
    build_ms: float = 0.0
    teardown_ms: float = 0.0
    matrices: list[dict] = field(default_factory=list)  # verify/matrix.py tables()
    verify_ms: float = 0.0
    rerun: str = ""  # the command that rebuilds this lab as the run did, with --then bash
    artifacts_dir: str | None = None  # where --artifacts put this run's files (README.txt there)
    then_status: int | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["duration_s"] = round(self.duration_s, 3)
        d["checks"] = [c.to_json() for c in self.checks]
        return d


def summarize(results: list[RecipeResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}


def exit_code(results: list[RecipeResult]) -> int:
    """0 all passed, 1 a check failed, 4 everything skipped (kselftest's convention).

    With --then: a failed check still wins (exit 1, the more important news);
    otherwise the first non-zero exit status of a --then command, in recipe order,
    becomes nsbox's, so `nsbox run LAB --then 'my-test.sh'` fails when the test does."""
    if any(r.status == "fail" for r in results):
        return 1
    then = next((r.then_status for r in results if r.then_status), None)
    if then:
        return then
    if results and all(r.status == "skip" for r in results):
        return 4
    return 0
