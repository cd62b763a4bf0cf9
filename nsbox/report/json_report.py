"""`--format json`: one object, {"results": [...], "summary": {...}}."""

from __future__ import annotations

import json

from nsbox.verify.results import RecipeResult, summarize


def render(results: list[RecipeResult]) -> str:
    return json.dumps({"results": [r.to_json() for r in results], "summary": summarize(results)}, indent=2)
