"""What Linux accepts as an interface name (net/core/dev.c: dev_valid_name)."""

from __future__ import annotations

IFNAMSIZ = 15  # bytes, without the trailing NUL


def control_char(text: str) -> str | None:
    """The first control character in TEXT (newline, tab, escape, DEL, U+2028...), or None.
    One of them in a name or value would end a line of iptables-restore input, a report
    or a script early, or fake one: nsbox refuses them wherever a value becomes text."""
    if text.isascii():  # no Zl/Zp there; printable ASCII has no Cc either (validation calls this ~40,000 times)
        if text.isprintable():
            return None
        return next(c for c in text if not c.isprintable())
    import unicodedata

    for c in text:
        if unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            return c
    return None


def ifname_problem(name: str) -> str | None:
    """Why the kernel would refuse NAME as an interface name, or None."""
    size = len(name.encode())
    if not name or size > IFNAMSIZ:
        return f"interface name {name!r} is {size} bytes; Linux allows 1-{IFNAMSIZ} (IFNAMSIZ)"
    if name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name):
        return f"interface name {name!r} may not contain '/', ':', NUL or spaces"
    if control_char(name):
        # the kernel takes them, but every `ip link` listing, report and script would carry them
        return f"interface name {name!r} may not contain control characters"
    if name in ("all", "default"):
        # Their /proc/sys/net/*/conf/ entries already exist; the kernel answers EINVAL.
        return f"interface name {name!r} is reserved by the kernel"
    return None
