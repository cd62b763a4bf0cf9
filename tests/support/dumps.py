"""Reading what the observer scripts print."""

from __future__ import annotations

import re


def dump_sections(text: str) -> dict[str, str]:
    """A --then dump that marks its parts with `@@ NAME` lines, as {NAME: text}."""
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        m = re.fullmatch(r"@@ (\S+)", line)
        if m:
            key = m.group(1)
            out[key] = ""
        elif key is not None:
            out[key] += line + "\n"
    return out
