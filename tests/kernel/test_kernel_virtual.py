"""Virtual addresses, answered_by, loopback probes, containers sharing a netns and machines,
against the real kernel (tests/data/virtual/virtual.py).

Independent observers: curl's own answer (the HTTP body names the server), `conntrack -L`
inside the node that DNATs, `ip -j addr` in the netns --then-in enters, and the
NSBOX_NETNS_* / NSBOX_MACHINE_* names compared with `ip netns list`-visible names.
Mutations: without the DNAT rule the published-port check fails; with a wrong answerer
declared the Service check fails, naming who did answer.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]

RECIPES = str(DATA / "virtual")


def _run(nsbox, *args: str):
    return nsbox.run("run", "virtual-lab", "--recipes", RECIPES, "--timeout", "0.3", "--format", "json", *args)


def test_virtual_lab_passes_and_the_kernel_agrees(nsbox):
    then = ("ip netns exec $NSBOX_NETNS_CLIENT curl -s --max-time 2 http://10.96.0.10/host; echo; "
            "ip netns exec $NSBOX_NETNS_CLIENT curl -s --max-time 2 http://10.96.0.10/host; echo; "
            "conntrack -L -p tcp --orig-port-dst 8080 2>/dev/null; "
            "echo MACHINE=$NSBOX_MACHINE_NODE1; echo SIDE=$NSBOX_NETNS_SIDE P1=$NSBOX_NETNS_P1; "
            "ip netns exec $NSBOX_NETNS_P1 ss -Hltn 'sport = :9090'")
    r = _run(nsbox, "--then-in", "node1", "--then", then)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert all(c["passed"] for c in checks.values()), r.describe()
    assert checks["tcp client->node1:8080 (published)"]["answered_by"] == "side"
    assert checks["http client->service"]["answered_by"] in ("p1", "p2")
    assert checks["http client->service"]["dst"] == "service web"
    assert r.result["machines"] == {"node1": ["node1", "p1", "p2"]}
    out = r.stderr
    # curl, not nsbox: the server that answered the Service address is a pod's
    bodies = re.findall(r"NODE: (\w+), POD IP:", out)
    assert len(bodies) == 2 and set(bodies) <= {"p1", "p2"}, out
    # conntrack in node1 (--then-in node1): the published port was DNAT'ed to side's 10.0.0.2:9090
    assert re.search(r"dst=192\.0\.2\.1 sport=\d+ dport=8080 src=10\.0\.0\.2 dst=192\.0\.2\.2 sport=9090", out), out
    ns = r.result["namespaces"]
    assert f"MACHINE={ns['node1']} {ns['p1']} {ns['p2']}" in out, out
    # a container's netns is its node's
    assert f"SIDE={ns['p1']} P1={ns['p1']}" in out, out
    # ss: the port `late` could not take has a listener in p1's netns (`*`: the dual-stack
    # wildcard, IPv4 included, where servers listen since they answer both families)
    assert re.search(r"LISTEN\s+\d+\s+\d+\s+\*:9090", out), out
    assert checks["interfaces of side"]["observed"] == "interfaces eth0, lo"
    ct = checks["conntrack node1: tcp client->node1:8080 (published)"]
    assert ct["observed"] == "entry, reply from 10.0.0.2:9090 to 192.0.2.2", ct
    bind = checks["tcp/9090 late port conflict"]
    assert bind["kind"] == "bind" and bind["observed"] == "port taken by side" and "EADDRINUSE" in bind["detail"]


def test_then_in_enters_that_netns(nsbox):
    r = _run(nsbox, "--then-in", "side", "--then", "ip -j -4 addr show dev eth0")
    assert r.returncode == 0, r.describe()
    js = json.loads(r.stderr[r.stderr.index("[{"):].splitlines()[0])
    assert js[0]["addr_info"][0]["local"] == "10.0.0.2"  # p1's address: side shares p1's netns


def test_then_in_unknown_node_is_one_line_exit_2(nsbox):
    r = nsbox.run("run", "virtual-lab", "--recipes", RECIPES, "--then-in", "ghost", "--then", "true")
    assert r.returncode == 2, r.describe()
    assert r.stderr.strip().splitlines() == ["nsbox: error: --then-in ghost: no node or container 'ghost' in virtual-lab"]


def test_without_the_dnat_the_published_check_fails(nsbox):
    r = _run(nsbox, "--set", "dnat=0", "--settle", "0.5")
    assert r.returncode == 1, r.describe()
    c = r.checks()["tcp client->node1:8080 (published)"]
    assert not c["passed"] and c["observed"] == "deny", c
    assert r.checks()["http client->service"]["passed"]


def test_a_wrong_answerer_fails_and_names_who_answered(nsbox):
    r = _run(nsbox, "--set", "wrong=1", "--settle", "0.5")
    assert r.returncode == 1, r.describe()
    c = r.checks()["http client->service"]
    assert not c["passed"]
    assert re.fullmatch(r"allow, answered by p[12]", c["observed"]), c


def test_on_host_too(nsbox):
    r = _run(nsbox, "--on-host")
    assert r.returncode == 0, r.describe()


def test_two_servers_on_one_port_in_one_netns_the_kernel_refuses_it_too():
    """The validation rule (two containers of one netns on one port) is the kernel's EADDRINUSE."""
    code = ("import socket\n"
            "a = socket.socket(); a.bind(('0.0.0.0', 80)); a.listen()\n"
            "b = socket.socket()\n"
            "try:\n    b.bind(('0.0.0.0', 80))\nexcept OSError as e:\n    print(e.errno)\n")
    p = subprocess.run(["unshare", "--net", "python3", "-c", code], capture_output=True, text=True, timeout=20)
    assert p.stdout.strip() == "98", p  # EADDRINUSE
