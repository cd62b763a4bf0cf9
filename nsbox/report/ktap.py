"""`--format ktap`: KTAP version 1 (Documentation/dev-tools/ktap.rst), as kselftest prints it.

    KTAP version 1
    1..2                                     one test per recipe
      KTAP version 1                         each recipe a nested block, indented 2 spaces
      1..3                                   one result per check, numbered from 1
      # expected: allow; observed: allow     diagnostics for the result that follows
      # echo reply from 172.17.0.3
      ok 1 icmp c1->c2
      # expected: deny; observed: allow
      not ok 2 tcp/80 internet->c2
      not ok 3 teardown # ERROR teardown: ...
    not ok 1 bridge-mode
    ok 2 macvlan # SKIP kernel lacks macvlan
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:1

The Totals line counts the leaves: every check, each skipped recipe (skip) and
each recipe error (error; a `build`, `run` or `teardown` test with the ERROR
directive). Exit codes are kselftest's: 0 pass, 1 fail, 4 all skipped.
Descriptions never hold '#' (ktap.rst), so check names are sanitised.
"""

from __future__ import annotations

from nsbox.report.junit import error_case_name
from nsbox.verify.results import CheckResult, RecipeResult

VERSION = "KTAP version 1"
INDENT = "  "


def description(name: str) -> str:
    """A test name as a KTAP description: one line, no '#' (it would start a directive)."""
    return " ".join(name.replace("#", "no.").split()) or "unnamed"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_lines(n: int, c: CheckResult) -> list[str]:
    lines = [f"# expected: {_one_line(c.expected)}; observed: {_one_line(c.observed)}"
             + (f" (after {c.attempts} probes)" if c.attempts > 1 else "")]
    if c.detail:
        lines.append(f"# {_one_line(c.detail)}")
    if c.artifacts:
        lines.append("# artifacts: " + _one_line(" ".join(c.artifacts)))
    lines.append(f"{'ok' if c.passed else 'not ok'} {n} {description(c.name)}")
    return lines


def _recipe_block(r: RecipeResult, totals: dict[str, int]) -> list[str]:
    """The nested block of a recipe that ran (pass or fail)."""
    body: list[str] = []
    n = 0
    for c in r.checks:
        n += 1
        body += _check_lines(n, c)
        totals["pass" if c.passed else "fail"] += 1
    if r.error:
        n += 1
        body.append(f"not ok {n} {error_case_name(r)} # ERROR {_one_line(r.error)}")
        totals["error"] += 1
    head = [f"# artifacts_dir: {_one_line(r.artifacts_dir)}"] if r.artifacts_dir else []
    return [VERSION, f"1..{n}", *head, *body]


def render(results: list[RecipeResult]) -> str:
    totals = {"pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}
    lines = [VERSION, f"1..{len(results)}"]
    for i, r in enumerate(results, 1):
        name = description(r.recipe)
        if r.status == "skip":
            lines.append(f"ok {i} {name} # SKIP {_one_line(r.skip_reason or 'skipped')}")
            totals["skip"] += 1
            continue
        if r.description:
            lines.append(f"# {name}: {_one_line(r.description)}")
        lines += [INDENT + ln for ln in _recipe_block(r, totals)]
        lines.append(f"{'ok' if r.status == 'pass' else 'not ok'} {i} {name}")
    lines.append("# Totals: " + " ".join(f"{k}:{v}" for k, v in totals.items()))
    return "\n".join(lines) + "\n"
