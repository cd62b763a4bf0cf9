"""The human report: one line per check, what was expected, what happened, why."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as _markup
from rich.text import Text

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


WIDTH = 80  # every line of the report fits; longer text continues on indented lines


def wrap(first: str, text: str, indent: int, style: str = "") -> list[str]:
    """FIRST (markup, its visible width measured) followed by TEXT (plain; escaped here),
    broken at spaces into lines of at most WIDTH columns, the next ones indented by
    INDENT; STYLE (e.g. "dim", "red") wraps each piece of TEXT. A word longer than a
    line (a path, a command) is never cut: it stands whole on a line of its own, so it
    can be copied and pasted; only such a word goes past WIDTH."""
    import textwrap

    from rich.text import Text

    used = Text.from_markup(first).cell_len
    pieces = textwrap.wrap(controls(text), width=max(WIDTH - used, 20), subsequent_indent="",
                           break_long_words=False, break_on_hyphens=False) or [""]
    rest = textwrap.wrap(" ".join(pieces[1:]), width=WIDTH - indent, break_long_words=False,
                         break_on_hyphens=False) if len(pieces) > 1 else []
    open_, close = (f"[{style}]", "[/]") if style else ("", "")
    lines = [f"{first}{open_}{_markup(pieces[0])}{close}"]
    lines += [f"{' ' * indent}{open_}{_markup(p)}{close}" for p in rest]
    return lines


def _say(out: Console, first: str, text: str, indent: int, style: str = "") -> None:
    for line in wrap(first, text, indent, style):
        out.print(line)


def print_report(results: list[RecipeResult], console: Console | None = None, *, shown: int = 0,
                 quiet: bool = False) -> None:
    """The whole report; the first SHOWN recipes' sections were printed already (as each
    finished); QUIET: the summary alone."""
    out = console or Console(highlight=False, soft_wrap=True)
    for r in ([] if quiet else results[shown:]):
        print_section(r, out)
    print_summary(results, out)


def print_section(r: RecipeResult, console: Console | None = None) -> None:
    """One recipe's part of the report, printed as soon as the recipe is done."""
    out = console or Console(highlight=False, soft_wrap=True)
    _say(out, f"[bold]{escape(r.recipe)}[/]  ", r.description, 2)
    if r.status == "skip":
        _say(out, f"  {_STATUS['skip']}  ", r.skip_reason or "", 8)
        out.print()
        return
    if r.namespaces:
        nodes = ", ".join(r.namespaces.values())
        _say(out, "  ", f"built {len(r.namespaces)} namespaces ({_shorten(nodes)}) in {r.build_ms:.0f} ms; "
             f"torn down in {r.teardown_ms:.0f} ms", 4)
    for machine, nodes in r.machines.items():
        _say(out, "  ", f"machine {machine}: {_shorten(', '.join(nodes))}", 4)
    in_matrix = {f"{m['name']}: " for m in r.matrices}
    shown = [c for c in r.checks if not c.passed or not any(c.name.startswith(p) for p in in_matrix)]
    for m in r.matrices:
        for line in render_matrix(m):
            out.print(f"  {escape(line)}")
    width = min(max((len(controls(c.name)) for c in shown), default=0), _NAME_WIDTH)
    for c in shown:
        verdict = (f"{c.observed}, as expected" if c.passed else f"expected {c.expected}, observed {c.observed}")
        head = f"  {_MARK[c.passed]}  {_markup(controls(c.name).ljust(width))}  "
        if Text.from_markup(head).cell_len > WIDTH - 20:  # a long name: the verdict on the next line
            _say(out, f"  {_MARK[c.passed]}  ", c.name, 8)
            head = " " * 8
        _say(out, head, verdict, 8, "" if c.passed else "red")
        _say(out, " " * 8, c.detail + (f" (after {c.attempts} probes)" if c.attempts > 1 else ""), 8, "dim")
    if r.error:
        _say(out, "  [red]error:[/] ", r.error, 4)
    if r.artifacts_dir:
        _say(out, "  artifacts: ", f"{r.artifacts_dir}/README.txt", 4)  # the path stays whole, by its label
    passed = sum(c.passed for c in r.checks)
    out.print(f"  {_STATUS[r.status]}  {passed} of {len(r.checks)} checks passed in {r.duration_s:.1f} s")
    if r.status == "fail" and r.checks:
        _say(out, "  ", f"to look at the live lab: {r.rerun or f'nsbox run {r.recipe} --then bash'}", 4, "dim")
    out.print()


def print_summary(results: list[RecipeResult], console: Console | None = None) -> None:
    out = console or Console(highlight=False, soft_wrap=True)
    if len(results) > 1:
        # Every recipe on one line, so a long --all run ends with what matters.
        width = max(len(controls(r.recipe)) for r in results)
        out.print("[bold]Summary[/]")
        for r in results:
            what = (r.skip_reason or "" if r.status == "skip"
                    else f"{sum(c.passed for c in r.checks)} of {len(r.checks)} checks passed in {r.duration_s:.1f} s")
            if r.error and r.error.startswith(("interrupted", "no result")):
                what = r.error
            _say(out, f"  {_STATUS[r.status]}  {_markup(controls(r.recipe).ljust(width))}  ", what, 8)
        out.print()
    s = summarize(results)
    out.print(f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
