"""The warnings of nsbox/validate_hints.py are true of the kernel (issue 16): the Calico-style
node of tests/data/hints warned about fails its check, each fix the warnings name makes
its warning go away, and only both together make it pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support import paths

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("ip")]

RECIPES = str(paths.DATA / "hints")
NOADDR = "host has no IPv4 address"
NOROUTE = "proxy_arp on cali0123456789a cannot answer for 169.254.1.1"


@pytest.mark.parametrize("fixed,warned,passes", [
    (0, {NOADDR, NOROUTE}, False),   # as issue 16 met it
    (2, {NOROUTE}, False),           # an address, still no route to 169.254.1.1: no ARP answer
    (1, set(), True),                # address and default route: works, nothing to warn
])
@pytest.mark.parametrize("where", ["sandbox", "on-host"])
def test_warnings_match_what_the_kernel_does(nsbox, fixed, warned, passes, where):
    r = nsbox.run("run", "calico-node", "--recipes", RECIPES, "--set", f"fixed={fixed}", "--format", "json",
                  "--timeout", "0.5", "--settle", "0.5", *(["--on-host"] if where == "on-host" else []), timeout=60)
    assert r.returncode == (0 if passes else 1), r.describe()
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("nsbox: warning: calico-node: ")]
    assert {w for w in (NOADDR, NOROUTE) if any(w in ln for ln in lines)} == warned, r.stderr
    assert len(lines) == len(warned), lines
