"""port-publish against the real kernel, each variant observed by tools that are not nsbox:
iptables-save (the DNAT), ss -p (docker-proxy or nothing), /proc (route_localnet), curl
from outside (who answered, what source it saw), conntrack -L (the DNAT'ed tuple).
Mutation: the same lab without its DNAT rule fails the outside check."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.runner import shipped_recipe_import

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("curl", "ss", "conntrack", "iptables-save")]

THEN = ("iptables-save -t nat | grep DNAT; ss -Hlnup 'sport = :8080'; ss -Hltnp 'sport = :8080'; "
        "echo ROUTE_LOCALNET=$(cat /proc/sys/net/ipv4/conf/docker0/route_localnet); "
        'echo "BODY $(ip netns exec $NSBOX_NETNS_INTERNET curl -s --max-time 2 http://203.0.113.2:8080/source)"; '
        "conntrack -L -p tcp --orig-port-dst 8080 2>/dev/null")

VARIANTS = [
    [], ["--set", "proxy=false"], ["--set", "proto=udp"], ["--set", "proto=udp", "--set", "proxy=false"],
    ["--set", "range=true"], ["--set", "network=user"], ["--set", "bind=loopback"], ["--set", "bind=uplink"],
    ["--set", "docker=20.10"], ["--set", "docker=20.10", "--set", "proxy=false"], ["--on-host"],
]


@pytest.mark.parametrize("args", VARIANTS, ids=lambda a: "+".join(x for x in a if x != "--set") or "default")
def test_port_publish(nsbox, args):
    r = nsbox.run("run", "port-publish", *args, "--timeout", "0.3", "--format", "json", "--then", THEN)
    assert r.returncode == 0, r.describe()
    sets = dict(a.split("=") for a in args if "=" in a)
    proxy = sets.get("proxy", "true") == "true"
    proto = sets.get("proto", "tcp")
    out = r.stderr
    # the DNAT dockerd writes for the published port
    assert re.search(rf"-p {proto} -m {proto} --dport 8080 -j DNAT --to-destination 172\.1[78]\.0\.2:80", out), out
    # docker-proxy listens (proxy on) or nothing does (off: route_localnet instead)
    has_proxy = bool(re.search(r'users:\(\("docker-proxy"', out))
    assert has_proxy == proxy, out
    if not proxy and sets.get("network", "default") == "default":
        assert "ROUTE_LOCALNET=1" in out
    if proto == "tcp" and sets.get("bind", "any") != "loopback":
        # curl from outside: answered through DNAT, the client's own address seen
        assert re.search(r"^BODY 203\.0\.113\.1:\d+$", out, re.M), out
        assert re.search(r"dst=203\.0\.113\.2 sport=\d+ dport=8080 src=172\.1[78]\.0\.2 dst=203\.0\.113\.1 sport=80",
                         out), out


def test_without_the_dnat_the_outside_check_fails(nsbox, tmp_path):
    (tmp_path / "m.py").write_text(shipped_recipe_import("pp", "port_publish.py") + textwrap.dedent('''
        @recipe("publish-no-dnat")
        def build(lab):
            """port-publish with its DNAT rule taken out of the model."""
            pp.build(lab, "29", True, "any", "tcp", False, "default")
            for chain in lab.host.iptables("nat").chains.values():
                chain.rules = [r for r in chain.rules if "DNAT" not in r.render()]
    '''))
    r = nsbox.run("run", "publish-no-dnat", "--recipes", str(tmp_path), "--timeout", "0.3", "--settle", "0.5", "--format", "json")
    assert r.returncode == 1, r.describe()
    c = r.checks()["http internet->host:8080 (DNAT, client seen)"]
    # docker-proxy still answers: c1 sees the gateway, not the client
    assert not c["passed"] and c["observed"] == "allow, answered by c1, seen from 172.17.0.1", c
