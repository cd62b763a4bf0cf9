"""Trust, round two (issue 12), input side, against the real kernel and real iptables.

- item 21: rules in the forms iptables accepts without `-m PROTO` are loaded by real
  iptables-restore in a throwaway netns and read back with iptables-save: the model
  stores exactly what iptables-save prints;
- item 8: --then's `sh`, and what it runs, never come from a directory of the caller's PATH;
- item 19: one refused recipe among several is that recipe's error in the report, and
  the others run;
- item 22: a probe answered by its own source fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nsbox.kernel import iptables
from nsbox.model.rules import parse_rule

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.tools("unshare", "nsenter", "setpriv"),
]

REPO = Path(__file__).resolve().parents[1]


def nsbox(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=180)


IMPLICIT = [
    ("filter", "INPUT", "-p tcp --dport 8080 -j ACCEPT", 4),
    ("filter", "INPUT", "-p udp ! --dport 53 -j DROP", 4),
    ("filter", "INPUT", "-s 10.0.0.0/8 -p icmp --icmp-type 8 -j ACCEPT", 4),
    ("filter", "INPUT", "-p tcp --sport 1:1024 --dport 22 -j ACCEPT", 4),
    ("filter", "INPUT", "-m comment --comment web -p tcp --dport 80 -j ACCEPT", 4),
    ("nat", "PREROUTING", "-d 10.0.0.1/32 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080", 4),
    ("filter", "INPUT", "-p ipv6-icmp --icmpv6-type 128 -j ACCEPT", 6),
]


@pytest.mark.parametrize("flavour", ["nft", "legacy"])
@pytest.mark.parametrize("table, chain, spec, family", IMPLICIT)
def test_implicit_protocol_matches_are_stored_as_iptables_save_prints_them(table, chain, spec, family, flavour):
    """Item 21: the parser accepted only `-p tcp -m tcp --dport`; iptables accepts the short
    form. Load the recipe's text with the real restore in a throwaway netns, read it back
    with the real save: the model's render() is that line."""
    name = iptables.FAMILIES[family]
    restore, save = f"/usr/sbin/{name}-{flavour}-restore", f"/usr/sbin/{name}-{flavour}-save"
    if not (os.path.exists(restore) and os.path.exists(save)):
        pytest.skip(f"{name}-{flavour} is not installed")
    text = f"*{table}\n-A {chain} {spec}\nCOMMIT\n"
    done = subprocess.run(["unshare", "--net", "sh", "-c", f'"$1" < "$3" && "$2" -t {table}', "sh",
                           restore, save, "/dev/stdin"], input=text, capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and ("Could not fetch rule set" in done.stderr or "can't initialize" in done.stderr):
        pytest.skip(f"{flavour}: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    saved = [ln[len(f"-A {chain} "):] for ln in done.stdout.splitlines() if ln.startswith(f"-A {chain} ")]
    assert saved == [parse_rule(spec).render()]
