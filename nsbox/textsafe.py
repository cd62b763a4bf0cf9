"""Names as text a reader (or a parser) cannot be fooled by.

Recipe names, check names, interface names (the kernel allows almost any
byte but '/', NUL and whitespace… and iproute2-made names can hold more) end up
in reports, graphs and scripts. A newline in a check name must not print a
forged "PASS … 1 passed" line; a quote in an interface name must not end a DOT
or Mermaid label. Validation may refuse such names too (another layer); these
escapes hold whatever gets through.
"""

from __future__ import annotations

import re


def controls(text: object) -> str:
    """TEXT on one line: control and other non-printable characters (newline, CR,
    ESC, U+2028…) shown as Python escapes (\\n, \\x1b, \\u2028); a backslash doubled
    so an escape seen is always one nsbox wrote."""
    return "".join(ch if ch.isprintable() and ch != "\\" else ("\\\\" if ch == "\\" else repr(ch)[1:-1])
                   for ch in str(text))


def dot_string(text: object) -> str:
    """TEXT as a double-quoted Graphviz string: one line, `\\` and `"` escaped."""
    return '"' + controls(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


_MERMAID_PLAIN = re.compile(r"[A-Za-z0-9 _.,:/@+=-]")


def mermaid_text(text: object) -> str:
    """TEXT for inside a quoted Mermaid label: everything but plain characters as
    an entity code (#34; for ", #60; for <, #35; for #…), so no quote, bracket,
    pipe or tag can end the label or open markup."""
    return "".join(ch if _MERMAID_PLAIN.fullmatch(ch) else f"#{ord(ch)};" for ch in controls(text))
