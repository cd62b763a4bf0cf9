"""Where a report goes: stdout, or `--output FILE`, written atomically.

A CI job that reads FILE must never see half a report: the report is written to
a temporary file in the same directory and renamed over FILE (rename is atomic
within a file system). The path is checked before anything is built, so a typo
costs a one-line error (exit 2), not a whole run.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

from nsbox.errors import NsboxError, UsageError
from nsbox.verify.results import RecipeResult

FORMATS = ("text", "json", "junit", "ktap")

# Inside the sandbox /run is a private tmpfs (nsbox/sandbox): a report written
# there would vanish with the sandbox.
_SANDBOX_PRIVATE = ("/run",)


def check_output_path(path: str, sandboxed: bool) -> str:
    """PATH made absolute, or a UsageError: an --output FILE that cannot be written
    is refused before the kernel is touched."""
    if not path or path.endswith("/") or os.path.isdir(path):
        raise UsageError(f"--output {path!r} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"--output {path!r}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"--output {path!r}: directory {directory} is not writable")
    real = os.path.realpath(directory)
    if sandboxed and any(real == p or real.startswith(p + "/") for p in _SANDBOX_PRIVATE):
        raise UsageError(f"--output {path!r}: {real} is private to the sandbox (a tmpfs there); "
                         f"write the report elsewhere, or use --on-host")
    return os.path.abspath(path)


def render(results: list[RecipeResult], fmt: str) -> str:
    """The report as text, in FMT."""
    if fmt == "json":
        from nsbox.report import json_report

        return json_report.render(results) + "\n"
    if fmt == "junit":
        from nsbox.report import junit

        return junit.render(results)
    if fmt == "ktap":
        from nsbox.report import ktap

        return ktap.render(results)
    if fmt == "text":
        from rich.console import Console

        from nsbox.report import text

        buf = io.StringIO()
        text.print_report(results, Console(file=buf, highlight=False, soft_wrap=True, no_color=True, width=100))
        return buf.getvalue()
    raise UsageError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")


def emit(results: list[RecipeResult], fmt: str, output: str | None) -> None:
    """Print the report, or write it to OUTPUT."""
    if output is None:
        if fmt == "text":  # straight to the terminal, in colour where it is one
            from nsbox.report import text

            text.print_report(results)
        else:
            sys.stdout.write(render(results, fmt))
            sys.stdout.flush()
        return
    write_atomically(output, render(results, fmt))


def write_atomically(path: str, content: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise NsboxError(f"cannot write the report to {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600; a report is for the CI job and its readers, like any file the user creates.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise NsboxError(f"cannot write the report to {path}: {e.strerror}") from None
