"""The human report: one line per check, what was expected, what happened, why."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as _markup

from nsbox.textsafe import controls

from nsbox.report.matrix import render as render_matrix
from nsbox.verify.results import RecipeResult, summarize

_NAME_WIDTH = 34  # longer names push the verdict along rather than every line
_MARK = {True: "[green]PASS[/]", False: "[red bold]FAIL[/]"}
_STATUS = {"pass": "[green bold]PASS[/]", "fail": "[red bold]FAIL[/]", "skip": "[yellow bold]SKIP[/]"}


def escape(text: object) -> str:
    """TEXT shown as it is: rich markup escaped, and on one line: a newline (or CR,
    ESC…) in a check name must not print a line of its own, like a forged PASS."""
    return _markup(controls(text))


def print_report(results: list[RecipeResult], console: Console | None = None) -> None:
    out = console or Console(highlight=False, soft_wrap=True)
    for r in results:
        out.print(f"[bold]{escape(r.recipe)}[/]  {escape(r.description)}")
        if r.status == "skip":
            out.print(f"  {_STATUS['skip']}  {escape(r.skip_reason or '')}\n")
            continue
        if r.namespaces:
            nodes = ", ".join(r.namespaces.values())
            out.print(f"  built {len(r.namespaces)} namespaces ({escape(_shorten(nodes))}) in {r.build_ms:.0f} ms; "
                      f"torn down in {r.teardown_ms:.0f} ms")
        for machine, nodes in r.machines.items():
            out.print(f"  machine {escape(machine)}: {escape(_shorten(', '.join(nodes)))}")
        in_matrix = {f"{m['name']}: " for m in r.matrices}
        shown = [c for c in r.checks if not c.passed or not any(c.name.startswith(p) for p in in_matrix)]
        for m in r.matrices:
            for line in render_matrix(m):
                out.print(f"  {escape(line)}")
        width = min(max((len(controls(c.name)) for c in shown), default=0), _NAME_WIDTH)
        for c in shown:
            verdict = (f"{escape(c.observed)}, as expected" if c.passed
                       else f"[red]expected {escape(c.expected)}, observed {escape(c.observed)}[/]")
            out.print(f"  {_MARK[c.passed]}  {_markup(controls(c.name).ljust(width))}  {verdict}")
            out.print(f"        [dim]{escape(c.detail)}" + (f" (after {c.attempts} probes)" if c.attempts > 1 else "")
                      + "[/]")
        if r.error:
            out.print(f"  [red]error:[/] {escape(r.error)}")
        if r.artifacts_dir:
            out.print(f"  artifacts: {escape(r.artifacts_dir)}/README.txt")
        passed = sum(c.passed for c in r.checks)
        out.print(f"  {_STATUS[r.status]}  {passed} of {len(r.checks)} checks passed in {r.duration_s:.1f} s")
        if r.status == "fail" and r.checks:
            out.print(f"  [dim]to look at the live lab: {escape(r.rerun or f'nsbox run {r.recipe} --then bash')}[/]")
        out.print()
    if len(results) > 1:
        # Every recipe on one line, so a long --all run ends with what matters.
        width = max(len(controls(r.recipe)) for r in results)
        out.print("[bold]Summary[/]")
        for r in results:
            what = (r.skip_reason or "" if r.status == "skip"
                    else f"{sum(c.passed for c in r.checks)} of {len(r.checks)} checks passed in {r.duration_s:.1f} s")
            out.print(f"  {_STATUS[r.status]}  {_markup(controls(r.recipe).ljust(width))}  {escape(what)}")
        out.print()
    s = summarize(results)
    out.print(f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
