"""Rules as iptables itself judges them, before anything is built.

The model's parser (nsbox/model/rules.py) knows the rule grammar, not every
extension: whether `-m NAME` exists here, or what options a target takes, is
libxtables' knowledge. `{ip,ip6}tables-restore --test` parses the very text nsbox
would restore and loads every extension it names, in a throwaway netns, and
commits nothing: an unknown match or a bad target option is then a validation
error (exit 2) instead of a kernel error after the lab is half built (exit 1).
"""

from __future__ import annotations

import re
import subprocess

from nsbox.errors import ValidationError
from nsbox.model import Lab

_AT_LINE = re.compile(r"Error occurred at line: (\d+)")


def check_lab(lab: Lab) -> None:
    """ValidationError naming the node, table and rule that iptables-restore refuses."""
    from nsbox import tools
    from nsbox.host import netns
    from nsbox.host.programs import resolve_flavour
    from nsbox.wire import iptables

    flavour = resolve_flavour("auto")
    for node in lab.nodes.values():
        for family in iptables.FAMILIES:
            text = iptables.restore_text(node.firewall, family)
            if text == "\n":
                continue
            prog = tools.find(f"{iptables.FAMILIES[family]}-{flavour}-restore")
            if prog is None:
                return  # the run says which package is missing; nothing to judge with here
            with netns.scratch():
                done = subprocess.run([prog, "--test"], input=text, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ValidationError(f"node {node.name}: {iptables.FAMILIES[family]}-restore refuses "
                                      f"{_what(done.stderr, text)}")


def _what(stderr: str, text: str) -> str:
    """The error's first line and the rule it points at (iptables prints its line number)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first = lines[0] if lines else "the rules"
    first = re.sub(r"^\S+ v[\d.]+ \([^)]*\): ", "", first)
    m = _AT_LINE.search(stderr)
    rows = text.splitlines()
    if m and 0 < int(m.group(1)) <= len(rows):
        table = next((r[1:] for r in reversed(rows[:int(m.group(1))]) if r.startswith("*")), "?")
        return f"'{rows[int(m.group(1)) - 1]}' in table {table}: {first}"
    return first
