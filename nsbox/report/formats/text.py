"""text: the report for people (nsbox/report/text.py): one line per check, expected,
observed and why; to a terminal in colour, each recipe's section as it finishes."""

from __future__ import annotations

from nsbox.report.formats import Format, register


def render(results: list) -> str:
    import io

    from rich.console import Console

    from nsbox.report import text

    buf = io.StringIO()
    text.print_report(results, Console(file=buf, highlight=False, soft_wrap=True, no_color=True, width=100))
    return buf.getvalue()


def to_terminal(results: list, *, shown: int = 0, quiet: bool = False) -> None:
    from nsbox.report import text

    text.print_report(results, shown=shown, quiet=quiet)


def kernels(runs: list) -> str:
    from nsbox.report import kernels as matrix

    return matrix.render_text(runs)


FORMAT = register(Format("text", "for people", render, print=to_terminal, kernels=kernels))
