"""Report formats (`nsbox run --format`, `nsbox verify --format`), one module each,
found by discovery (nsbox.kinds.discover): the CLI's choices, report/output.FORMATS
and the live holder's check are this registry's names, never a hand copy.

A format module registers a Format: its name, a few words for --help, render()
(the whole report as text: stdout or --output FILE), optionally print() (text: to
the terminal, in colour, recipe sections already streamed) and kernels() (the
report of `nsbox run --kernels`, one run per kernel). A new format is one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from nsbox.errors import UsageError


@dataclass(frozen=True)
class Format:
    name: str
    help: str                                         # for --help: "JUnit XML", "for people"
    render: Callable[[list], str]                     # [RecipeResult] -> the report
    print: Callable[..., None] | None = None          # (results, shown=, quiet=) to the terminal
    kernels: Callable[[list], str] | None = None      # [KernelRun] -> the --kernels report


FORMATS: dict[str, Format] = {}


def register(f: Format) -> Format:
    FORMATS[f.name] = f
    return f


def names() -> tuple[str, ...]:
    """text first (the default), then the others in name order."""
    return tuple(sorted(FORMATS, key=lambda n: (n != "text", n)))


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown report format {name!r} (known: {', '.join(names())})") from None


def help_text() -> str:
    """The --format help: each format with its few words."""
    return "Report format: " + "; ".join(f"{f} ({FORMATS[f].help})" for f in names()) + "."


from nsbox.kinds import discover as _discover  # noqa: E402

_discover(__name__)
