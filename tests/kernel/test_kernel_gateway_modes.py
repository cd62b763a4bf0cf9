"""gateway-modes against the real kernel, each mode under both Docker 29 backends; curl from
outside (who answers a direct connection) and iptables-save / nft list (what the mode
wrote) as observers."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("curl")]

THEN = ('echo "DIRECT $(ip netns exec $NSBOX_NETNS_INTERNET curl -s --max-time 1 http://172.18.0.2/host)"; '
        "echo MASQ=$( (iptables-save -t nat; nft list ruleset) | grep -c '172.18.0.0/16.*masquerade\\|172.18.0.0/16.*MASQUERADE')")


@pytest.mark.parametrize("docker", ["29", "29-nftables"])
@pytest.mark.parametrize("mode", ["nat", "nat-unprotected", "routed", "isolated"])
def test_gateway_mode(nsbox, mode, docker):
    r = nsbox.run("run", "gateway-modes", "--set", f"mode={mode}", "--set", f"docker={docker}",
                  "--timeout", "0.3", "--format", "json", "--then", THEN)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.result["checks"]), r.describe()
    direct = re.search(r"^DIRECT (.*)$", r.stderr, re.M).group(1)
    # curl from outside straight to c1:80: only the modes without the raw DROP let it in
    assert (direct == "NODE: c1, POD IP:172.18.0.2") == (mode in ("nat-unprotected", "routed")), r.stderr
    # the network's MASQUERADE: gone only when routed (isolated keeps nat's rules, as moby
    # writes them; with no gateway nothing leaves anyway)
    masq = int(re.search(r"^MASQ=(\d+)$", r.stderr, re.M).group(1))
    assert (masq > 0) == (mode != "routed"), r.stderr


def test_docker_2010_has_no_gateway_modes(nsbox):
    r = nsbox.run("run", "gateway-modes", "--set", "docker=20.10")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.describe()


ROUTED_THEN = (
    "echo DNAT=$( (iptables-save -t nat; nft list ruleset) | grep -ci 'dnat'); "
    "echo PROXY=$(ss -Hltnp | grep -c docker-proxy); "
    'echo "DIRECT $(ip netns exec $NSBOX_NETNS_INTERNET curl -s --max-time 1 http://172.18.0.2/host)"; '
    'echo "HOSTPORT $(ip netns exec $NSBOX_NETNS_INTERNET curl -s --max-time 1 http://203.0.113.2:8080/host; echo rc=$?)"'
)


@pytest.mark.parametrize("docker", ["29", "29-nftables"])
def test_routed_mode_ignores_the_host_port(nsbox, docker):
    """moby's `routed` port mapper: `-p 8080:80` on a routed network writes no DNAT and
    starts no docker-proxy (iptables-save / nft list / ss -p as observers); the port is
    reached at c1's own address, host:8080 is the host's own server's (curl from `internet`)."""
    r = nsbox.run("run", "gateway-modes", "--set", "mode=routed", "--set", f"docker={docker}",
                  "--timeout", "0.3", "--format", "json", "--then", ROUTED_THEN)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.result["checks"]), r.describe()
    assert re.search(r"^DNAT=0$", r.stderr, re.M), r.stderr
    assert re.search(r"^PROXY=0$", r.stderr, re.M), r.stderr
    assert re.search(r"^DIRECT NODE: c1, POD IP:172.18.0.2$", r.stderr, re.M), r.stderr
    # the recipe's own server on the host's 8080 answers, not c1 (no DNAT, no proxy bind)
    assert re.search(r"^HOSTPORT NODE: host,.*\nrc=0$", r.stderr, re.M), r.stderr
