"""`--format json`: one object for programs.

    {"schema_version": 1,
     "results": [RecipeResult, ...],
     "summary": {"pass": N, "fail": N, "skip": N}}

Each element of "results" is a RecipeResult and each of its "checks" a
CheckResult (nsbox/verify/results.py documents every field). Version history:

- (none): the first shape, {"results", "summary"}; every key it had is kept.
- 1: "schema_version"; structured fields per check (src, dst, dst_ip, proto,
  port, local, seen, node) beside the prose in "detail"; "then_status" per recipe.

A reader should accept unknown keys: new keys may be added without a new
version; a key is removed or changes meaning only with a new version.
"""

from __future__ import annotations

import json

from nsbox.verify.results import RecipeResult, summarize

SCHEMA_VERSION = 1


def render(results: list[RecipeResult]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "results": [r.to_json() for r in results],
                       "summary": summarize(results)}, indent=2)
