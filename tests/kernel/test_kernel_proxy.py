"""The userland proxy (nsbox/verify/proxy.py, docker-proxy's part) against the real kernel:
`ss -p` sees a docker-proxy process listening in the host node; DNAT'ed traffic reaches the
container with the client's address while the proxy's arrives from the gateway; without
the DNAT rule the outside check fails (the proxy answers instead: a mutation); no proxy
process outlives the lab (the host guard, tests/support/host.py checks processes)."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("ss")]

RECIPES = str(DATA / "proxy")


@pytest.mark.parametrize("mode", [[], ["--on-host"]], ids=["sandbox", "on-host"])
def test_proxy_lab(nsbox, mode):
    r = nsbox.run("run", "proxy-lab", "--recipes", RECIPES, *mode, "--format", "json",
                  "--then", "ss -Hltnup 'sport = :8080 or sport = :5353'")
    assert r.returncode == 0, r.describe()
    assert re.search(r'tcp\s+LISTEN.*0\.0\.0\.0:8080 .*users:\(\("docker-proxy",pid=\d+', r.stderr), r.stderr
    assert re.search(r'udp\s+UNCONN.*0\.0\.0\.0:5353 .*users:\(\("docker-proxy",pid=\d+', r.stderr), r.stderr
    checks = r.checks()
    assert checks["http outside->host:8080 (DNAT, the client seen)"]["seen"]["ip"] == "203.0.113.1"
    assert checks["http host->127.0.0.1:8080 (docker-proxy)"]["seen"]["ip"] == "192.0.2.1"


def test_without_dnat_the_proxy_answers_and_the_check_fails(nsbox):
    r = nsbox.run("run", "proxy-lab", "--recipes", RECIPES, "--set", "dnat=0", "--timeout", "0.3", "--settle", "0.5", "--format", "json")
    assert r.returncode == 1, r.describe()
    c = r.checks()["http outside->host:8080 (DNAT, the client seen)"]
    assert not c["passed"] and c["observed"] == "allow, answered by c1, seen from 192.0.2.1", c


HALF_CLOSE = ("ok=0; for i in $(seq 20); do "
              "printf 'GET /host HTTP/1.0\\r\\n\\r\\n' | nc -N -w 3 {dst} 8080 | grep -q 'NODE: c1' && ok=$((ok+1)); "
              "done; echo {tag}=$ok")


@pytest.mark.tools("nc")
def test_proxy_passes_a_half_close_on(nsbox):
    """docker-proxy relays each direction on its own: a client that sends its request and
    half-closes (nc -N: shutdown(SHUT_WR) at stdin's EOF) still gets the answer, from the
    host's loopback and from the container through the gateway address (both the proxy's:
    DNAT skips loopback and the bridge). A relay that closes both sides on the first EOF
    answers none of them."""
    then = (HALF_CLOSE.format(dst="127.0.0.1", tag="LOOPBACK") + "; "
            + "ip netns exec $NSBOX_NETNS_C1 sh -c \"" + HALF_CLOSE.format(dst="192.0.2.1", tag="GATEWAY")
            .replace('"', '\\"').replace("$", "\\$") + "\"")
    r = nsbox.run("run", "proxy-lab", "--recipes", RECIPES, "--format", "json", "--then", then)
    assert r.returncode == 0, r.describe()
    assert re.search(r"^LOOPBACK=20$", r.stderr, re.M), r.stderr
    assert re.search(r"^GATEWAY=20$", r.stderr, re.M), r.stderr
