"""Verdicts, as the reports read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["pass", "fail", "skip"]


@dataclass
class CheckResult:
    name: str
    kind: Literal["reach", "conntrack"]
    expected: str
    observed: str
    passed: bool
    detail: str = ""
    attempts: int = 1
    duration_ms: float = 0.0
    artifacts: list[str] = field(default_factory=list)  # files that explain a failure (--artifacts)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RecipeResult:
    recipe: str
    status: Status
    duration_s: float = 0.0
    skip_reason: str | None = None
    error: str | None = None  # a build or kernel error that stopped the recipe
    description: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # node -> netns name while it existed
    build_ms: float = 0.0
    teardown_ms: float = 0.0
    matrices: list[dict] = field(default_factory=list)  # verify/matrix.py tables()
    verify_ms: float = 0.0
    artifacts_dir: str | None = None  # where --artifacts put this run's files (README.txt there)

    def to_json(self) -> dict:
        d = asdict(self)
        d["duration_s"] = round(self.duration_s, 3)
        d["checks"] = [c.to_json() for c in self.checks]
        return d


def summarize(results: list[RecipeResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}


def exit_code(results: list[RecipeResult]) -> int:
    """0 all passed, 1 a check failed, 4 everything skipped (kselftest's convention)."""
    if any(r.status == "fail" for r in results):
        return 1
    if results and all(r.status == "skip" for r in results):
        return 4
    return 0
