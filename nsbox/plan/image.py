"""`nsbox show --format svg|png --output FILE`: the dot picture drawn by Graphviz.

`dot` is found only in the system's directories (nsbox/tools.py), fed the dot
text on stdin, and its output written through the --output directory fd that was
checked before the recipe was loaded (nsbox/report/output.py, nsbox/safefs.py):
atomically, refusing symlinks planted by others, FIFOs, /proc and /sys.
"""

from __future__ import annotations

import subprocess

from nsbox import safefs, tools
from nsbox.errors import NsboxError, UsageError
from nsbox.report.output import OutputTarget

IMAGE_FORMATS = ("svg", "png")
_DOT_SECONDS = 60  # a large lab (containers=1000) takes a few seconds; a hung dot must not hang nsbox


def dot_program() -> str:
    """The path of Graphviz's `dot`, or a UsageError saying how to get it."""
    path = tools.find("dot")
    if path is None:
        raise UsageError("--format svg/png needs Graphviz's `dot` (apt install graphviz); "
                         "--format dot prints the text it would draw")
    return path


def draw(dot_text: str, fmt: str, dot: str) -> bytes:
    """DOT_TEXT drawn as FMT (svg or png) by the `dot` at DOT."""
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"image format {fmt!r}: svg or png")
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=_DOT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise NsboxError(f"dot did not finish within {_DOT_SECONDS} s") from None
    if done.returncode != 0:
        first = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[0]
        raise NsboxError(f"dot -T{fmt} failed (exit {done.returncode}): {first[:200]}")
    return done.stdout


def write(target: OutputTarget, data: bytes) -> None:
    try:
        safefs.replace(target.dir_fd, target.name, data)
    except OSError as e:
        raise NsboxError(f"cannot write the picture to {target}: {e.strerror}") from None
