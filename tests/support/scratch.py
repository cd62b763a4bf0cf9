"""A scratch network namespace for loading rules into a kernel without a lab around them."""

from __future__ import annotations

import subprocess


def in_netns(script: str, timeout: float = 120) -> str:
    """Run SCRIPT (sh) in a new, empty network namespace; its stdout. The namespace has no
    name and no other process: it goes away when sh exits."""
    res = subprocess.run(["unshare", "--net", "--", "sh", "-ec", script],
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr.strip()}"
    return res.stdout


def strip_comments(text: str) -> str:
    """TEXT without its `#` comment lines (iptables-save's and nft's headers)."""
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))
