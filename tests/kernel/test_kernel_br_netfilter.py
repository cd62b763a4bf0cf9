"""br_netfilter as each Docker layout has it, against the real kernel: an admin's
DOCKER-USER DROP between two containers on one bridge drops (its packet counter in
iptables-save -c rises, the keys read 1 in /proc) where br_netfilter is loaded (dockerd
20.10 loads it at start; a Docker 29 host where something else loaded it), and lets the
connection through where it is not (Docker 29 on a stock host; 20.10 with the keys
turned off): the mutation."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save")]

RECIPES = str(DATA / "docker_user")
THEN = ("echo BRNF=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables); "
        "iptables-save -c -t filter | grep -- '-A DOCKER-USER -s 172.17.0.2'")
CHECK = "tcp/7 c1->c2 (DOCKER-USER DROP, bridged)"


def _counter(stderr: str) -> int:
    m = re.search(r"^\[(\d+):\d+\] -A DOCKER-USER -s 172\.17\.0\.2/32", stderr, re.M)
    assert m, stderr
    return int(m.group(1))


@pytest.mark.parametrize("sets", [["docker=20.10"], ["docker=29", "br_netfilter=1"]], ids=["20.10", "29-loaded"])
def test_docker_user_drops_between_containers_on_one_bridge(nsbox, sets):
    args = [a for s in sets for a in ("--set", s)]
    r = nsbox.run("run", "docker-user-bridged", "--recipes", RECIPES, *args, "--timeout", "0.5",
                  "--format", "json", "--then", THEN)
    assert r.returncode == 0, r.describe()
    assert r.checks()[CHECK]["passed"], r.describe()
    assert re.search(r"^BRNF=1$", r.stderr, re.M), r.stderr
    assert _counter(r.stderr) > 0


@pytest.mark.parametrize("sets", [["docker=29"], ["docker=20.10", "br_netfilter=0"]], ids=["29-stock", "20.10-off"])
def test_without_br_netfilter_the_rule_is_never_reached(nsbox, sets):
    args = [a for s in sets for a in ("--set", s)]
    r = nsbox.run("run", "docker-user-bridged", "--recipes", RECIPES, *args, "--timeout", "0.5",
                  "--settle", "0.5", "--format", "json", "--then", THEN)
    assert r.returncode == 1, r.describe()
    c = r.checks()[CHECK]
    assert not c["passed"] and c["observed"].startswith("allow"), c
    assert re.search(r"^BRNF=0$", r.stderr, re.M), r.stderr
    assert _counter(r.stderr) == 0
