"""user-networks against the real kernel: every layout, dig and iptables-save inside the
live lab as observers, and mutations (icc=false without bridge-nf-call-iptables; the
embedded DNS without its DNAT) that must fail the checks they name."""

from __future__ import annotations

import textwrap

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.runner import shipped_recipe_import

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("dig")]

DIG = ("echo A2=$(ip netns exec $NSBOX_NETNS_A1 dig +short +time=1 +tries=1 @127.0.0.11 a2); "
       "echo WEB=$(ip netns exec $NSBOX_NETNS_A1 dig +short +time=1 +tries=1 @127.0.0.11 web); "
       "ip netns exec $NSBOX_NETNS_A1 dig +time=1 +tries=1 @127.0.0.11 b1 | grep -o 'status: [A-Z]*'")


@pytest.mark.parametrize("sets", [["docker=29"], ["docker=20.10"], ["docker=29-nftables"], ["docker=29", "icc=false"],
                                  ["docker=20.10", "icc=false"]], ids="+".join)
def test_user_networks(nsbox, sets):
    args = [a for kv in sets for a in ("--set", kv)]
    r = nsbox.run("run", "user-networks", *args, "--timeout", "0.3", "--format", "json",
                  "--then", DIG)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.result["checks"]), r.describe()
    # dig, not nsbox: the embedded DNS answers a1's network's names and aliases only
    assert "A2=172.18.0.3" in r.stderr and "WEB=172.18.0.3" in r.stderr, r.stderr
    assert "status: NXDOMAIN" in r.stderr


def test_user_networks_on_host(nsbox):
    r = nsbox.run("run", "user-networks", "--on-host", "--timeout", "0.3", "--format", "json")
    assert r.returncode == 0, r.describe()


def _mutant(tmp_path, body: str) -> str:
    (tmp_path / "m.py").write_text(shipped_recipe_import("un", "user_networks.py") + textwrap.dedent('''
        @recipe("user-networks-mutant")
        def build(lab):
            """user-networks, changed."""
    ''') + textwrap.indent(textwrap.dedent(body), " " * 4))
    return str(tmp_path)


def test_icc_false_needs_bridge_nf_call_iptables(nsbox, tmp_path):
    d = _mutant(tmp_path, '''
        un.build(lab, "29", False)
        lab.host.sysctl("net.bridge.bridge-nf-call-iptables", 0)
    ''')
    r = nsbox.run("run", "user-networks-mutant", "--recipes", d, "--timeout", "0.3", "--settle", "0.5",
                  "--format", "json")
    assert r.returncode == 1, r.describe()
    c = r.checks()["tcp/7 a1->a2 (same network, icc=false)"]
    assert not c["passed"] and c["observed"] == "allow", c  # bridged traffic never met the DROP


def test_embedded_dns_without_its_dnat_fails(nsbox, tmp_path):
    d = _mutant(tmp_path, '''
        un.build(lab, "29", True)
        out = lab.nodes["a1"].iptables("nat").chains["DOCKER_OUTPUT"]
        out.rules = [r for r in out.rules if "udp" not in r.render()]
    ''')
    r = nsbox.run("run", "user-networks-mutant", "--recipes", d, "--timeout", "0.3", "--settle", "0.5",
                  "--format", "json")
    assert r.returncode == 1, r.describe()
    for name in ("dns a1: a2", "dns a1: web (a2's alias)", "dns a1: b1 (another network)"):
        assert r.checks()[name]["observed"] == "deny", r.checks()[name]
    assert r.checks()["dns i1: i2 (internal too)"]["passed"]


DNS_THEN = (
    'echo "@@ a1udp"; ip netns exec $NSBOX_NETNS_A1 dig +short +time=2 +tries=1 @127.0.0.11 www.example.test; '
    'echo "@@ a1tcp"; ip netns exec $NSBOX_NETNS_A1 dig +tcp +short +time=2 +tries=1 @127.0.0.11 www.example.test; '
    'echo "@@ a1tcplocal"; ip netns exec $NSBOX_NETNS_A1 dig +tcp +short +time=2 +tries=1 @127.0.0.11 a2; '
    'echo "@@ ct"; conntrack -L -p udp --dport 53 2>/dev/null | grep "dst=203.0.113.1 "; '
    'echo "@@ i1"; ip netns exec $NSBOX_NETNS_I1 dig +time=7 +tries=1 @127.0.0.11 www.example.test; '
    'echo "@@ ss"; ip netns exec $NSBOX_NETNS_A1 ss -Hlnup "sport = :40000"; ip netns exec $NSBOX_NETNS_A1 ss -Hltnp')


@pytest.mark.tools("dig", "conntrack")
@pytest.mark.parametrize("docker", ["29", "20.10"])
def test_embedded_dns_forwards_and_answers_over_tcp(nsbox, docker):
    """Names of no network of a1's go, from a1's netns, to the host's upstream resolver
    (internet's DNS server): dig gets its answer over UDP and over TCP, conntrack on the
    host shows the forwarded query MASQUERADEd (a1's address, replies to the uplink);
    the network's own names answer over TCP too. i1 (internal: no way out) gets no
    upstream answer: SERVFAIL from Docker 28+, silence (dig times out) from 20.10."""
    r = nsbox.run("run", "user-networks", "--set", f"docker={docker}", "--timeout", "0.5", "--format", "json",
                  "--then", DNS_THEN)
    assert r.returncode == 0, r.describe()
    s = {}
    key = None
    for line in r.stderr.splitlines():
        if line.startswith("@@ "):
            key = line[3:]
            s[key] = ""
        elif key:
            s[key] += line + "\n"
    assert s["a1udp"].split() == ["203.0.113.1"], s
    assert s["a1tcp"].split() == ["203.0.113.1"], s
    assert s["a1tcplocal"].split() == ["172.18.0.3"], s
    assert "src=172.18.0.2" in s["ct"] and "dst=203.0.113.2" in s["ct"].split("src=203.0.113.1", 1)[1], s["ct"]
    if docker == "20.10":
        assert "timed out" in s["i1"] and "status:" not in s["i1"], s["i1"]
    else:
        assert "status: SERVFAIL" in s["i1"], s["i1"]
    assert '"dockerd"' in s["ss"], s["ss"]  # the resolver's sockets are dockerd's, as in Docker
