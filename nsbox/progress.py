"""What nsbox says on stderr while it works: which recipe of how many, and its
phase (building, verifying N checks, tearing down), so `run --all` or a lab of 1000
containers is not silent for seconds.

Only where someone watches: stderr a terminal, or --verbose. Piped or redirected
output gets nothing extra (CI logs and reports stay byte-stable); --quiet silences
it. Lines, not a redrawn status line: the report's sections are printed on stdout
as each recipe finishes, on the same terminal.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, verbose: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.on = not quiet and (verbose or _isatty(self.stream))
        self.index = 0
        self.name = ""
        self._t0 = time.monotonic()

    def start(self, name: str) -> None:
        self.index += 1
        self.name = name
        self._t0 = time.monotonic()
        self.say("starting")

    def phase(self, what: str) -> None:
        self.say(what)

    def say(self, what: str) -> None:
        if not self.on:
            return
        from nsbox.textsafe import controls

        where = f"[{self.index}/{self.total}] " if self.total > 1 else ""
        line = f"nsbox: {where}{controls(self.name)}: {controls(what)} ({time.monotonic() - self._t0:.1f} s)"
        try:
            self.stream.write(line[:79] + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self.on = False  # the terminal went away: the run goes on


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError, AttributeError):
        return False
