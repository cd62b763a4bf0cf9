"""A RecipeResult back from the JSON report another nsbox wrote (in a VM, or on the host).

What a guest wrote is data from recipe code that ran as root in the guest: only the
known fields are taken, each of the type it must have; a result that is not one is an
error, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from nsbox.kinds.checks import result_kinds
from nsbox.verify.results import CheckResult, Endpoint, RecipeResult

_STATUSES = ("pass", "fail", "skip")
# Every check kind the verifier reports, from the registry of check kinds: a kind added
# there (route, neigh, spread, ...) is known here too, never a "bad report".
_KINDS = result_kinds()


class BadReport(ValueError):
    """The JSON is not an nsbox report."""


def parse_report(data: bytes) -> list[RecipeResult]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadReport(f"the report is not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise BadReport("the report has no list of results")
    return [recipe_result(r) for r in doc["results"]]


def recipe_result(d: Any) -> RecipeResult:
    if not isinstance(d, dict) or not isinstance(d.get("recipe"), str) or d.get("status") not in _STATUSES:
        raise BadReport("a result without a recipe name and status")
    kw = _known(RecipeResult, d, skip=("checks",))
    checks = d.get("checks") or []
    if not isinstance(checks, list):
        raise BadReport(f"{d['recipe']}: checks is not a list")
    return RecipeResult(**kw, checks=[check_result(c) for c in checks])


def check_result(d: Any) -> CheckResult:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or d.get("kind") not in _KINDS \
            or not isinstance(d.get("passed"), bool):
        raise BadReport("a check without a name, kind and verdict")
    kw = _known(CheckResult, d, skip=("local", "seen"))
    for key in ("local", "seen"):
        e = d.get(key)
        kw[key] = (Endpoint(e["ip"], e["port"]) if isinstance(e, dict) and isinstance(e.get("ip"), str)
                   and isinstance(e.get("port"), int) else None)
    return CheckResult(**kw)


def _known(cls: type, d: dict, skip: tuple[str, ...]) -> dict:
    """The fields of dataclass CLS that D holds with a value of the field's plain type."""
    out: dict = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name not in d:
            continue
        value = d[f.name]
        if value is None or _fits(str(f.type), value):
            out[f.name] = value
    return out


def _fits(annotation: str, value: Any) -> bool:
    if annotation.startswith("Literal") or annotation == "Status":
        return isinstance(value, str)
    if annotation.startswith("list"):
        return isinstance(value, list)
    if annotation.startswith("dict"):
        return isinstance(value, dict)
    if "float" in annotation:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if "int" in annotation:
        return isinstance(value, int) and not isinstance(value, bool)
    if "bool" in annotation:
        return isinstance(value, bool)
    return isinstance(value, str)
