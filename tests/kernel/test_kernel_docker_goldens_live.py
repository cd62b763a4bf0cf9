"""Docker's bindlh=true firewall scenarios (`-p 127.0.0.1:8080:80 -p [::1]:8080:80`) as
live labs: two docker-proxy listeners on one port at distinct addresses (ss -ltnp), the
port answered at both loopbacks by c1 (curl), and the host's iptables-save /
ip6tables-save equal to Docker's golden file (counters and comments aside). Before
nsbox allowed distinct-address binds of one port the lab was refused (EADDRINUSE)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections as _sections
from tests.support.golden import REFERENCE
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ss", "curl", "iptables-save", "ip6tables-save")]

RECIPES = str(DATA / "docker_goldens")
GOLDENS = REFERENCE / "goldens" / "iptables"
SCENARIOS = (
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=true",
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=true",
    "hairpin=false,internal=false,icc=false,masq=true,snat=true,gwm=nat,bindlh=true",
)
THEN = ('echo "@@ ss"; ss -Hltnp "sport = :8080"; '
        'echo "@@ curl4"; curl -s --max-time 2 http://127.0.0.1:8080/host; echo; '
        'echo "@@ curl6"; curl -s --max-time 2 "http://[::1]:8080/host"; echo; '
        'for t in raw filter nat; do echo "@@ v4$t"; iptables-save -t $t; echo "@@ v6$t"; ip6tables-save -t $t; done')


def _normal(save: str) -> list[str]:
    return [re.sub(r"\[\d+:\d+\]$", "[0:0]", ln) for ln in save.splitlines() if ln and not ln.startswith("#")]


def _golden_tables(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    table = None
    for ln in path.read_text().splitlines():
        if ln.startswith("*"):
            table = ln[1:]
            out[table] = []
        if table is not None:
            out[table].append(ln)
    return out


@pytest.mark.skipif(not GOLDENS.is_dir(), reason=f"no Docker goldens under {GOLDENS}")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_port_on_both_loopbacks_as_a_live_lab(nsbox, scenario):
    r = nsbox.run("run", "docker-golden-lab", "--recipes", RECIPES, "--set", f"scenario={scenario}",
                  "--format", "json", "--then", THEN)
    assert r.returncode == 0, r.describe()
    s = _sections(r.stderr)
    listeners = re.findall(r'LISTEN.*?(\S+):8080 .*users:\(\("docker-proxy"', s["ss"])
    assert sorted(listeners) == ["127.0.0.1", "[::1]"], s["ss"]
    assert s["curl4"].startswith("NODE: c1"), s["curl4"]
    assert s["curl6"].startswith("NODE: c1"), s["curl6"]
    for fam, kind in (("v4", "iptables"), ("v6", "ip6tables")):
        want = _golden_tables(GOLDENS / f"{scenario}__{kind}.golden")
        for table, lines in want.items():
            assert _normal(s[f"{fam}{table}"]) == lines, f"{kind} {table}"
