"""none-mode, host-mode and container-mode against the real kernel, under each Docker
layout and on the host, with independent observers: ip -j, ss, curl, conntrack -L, and
the netns names --then sees."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("curl", "ss", "conntrack")]

LAYOUTS = [["--set", "docker=29"], ["--set", "docker=20.10"]]
IDS = ["docker29", "docker20.10"]


def _run(nsbox, recipe, args, then):
    r = nsbox.run("run", recipe, *args, "--timeout", "0.3", "--format", "json", "--then", then)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.result["checks"]), r.describe()
    return r


@pytest.mark.parametrize("args", LAYOUTS, ids=IDS)
def test_none_mode(nsbox, args):
    then = ('echo "LINKS $(ip -n $NSBOX_NETNS_N1 -j link show)"; '
            'echo "BODY $(ip netns exec $NSBOX_NETNS_N1 curl -s --max-time 2 http://127.0.0.1/host)"; '
            'echo "ROUTES $(ip -n $NSBOX_NETNS_N1 -j route show)"')
    r = _run(nsbox, "none-mode", args, then)
    links = json.loads(re.search(r"^LINKS (.*)$", r.stderr, re.M).group(1))
    assert [link["ifname"] for link in links] == ["lo"]
    assert "BODY NODE: n1, POD IP:" in r.stderr
    assert json.loads(re.search(r"^ROUTES (.*)$", r.stderr, re.M).group(1)) == []


@pytest.mark.parametrize("args", LAYOUTS, ids=IDS)
def test_host_mode(nsbox, args):
    then = ("ss -Hltn 'sport = :80'; "
            'echo "BODY $(ip netns exec $NSBOX_NETNS_INTERNET curl -s --max-time 2 http://203.0.113.2/host)"; '
            "conntrack -L -p tcp --dport 80 2>/dev/null; "
            'echo "SAME $NSBOX_NETNS_H1 $NSBOX_NETNS_HOST"')
    r = _run(nsbox, "host-mode", args, then)
    assert re.search(r"LISTEN\s+\d+\s+\d+\s+\S*:80\s", r.stderr), r.stderr  # h1's listener, in the host's netns
    assert "BODY NODE: h1, POD IP:" in r.stderr
    # h1's egress: the reply comes back to the host's own address, untranslated
    assert re.search(r"src=203\.0\.113\.2 dst=203\.0\.113\.1 sport=(\d+) dport=80 "
                     r"src=203\.0\.113\.1 dst=203\.0\.113\.2 sport=80 dport=\1", r.stderr), r.stderr
    same = re.search(r"^SAME (\S+) (\S+)$", r.stderr, re.M)
    assert same.group(1) == same.group(2)


@pytest.mark.parametrize("args", LAYOUTS, ids=IDS)
def test_container_mode(nsbox, args):
    then = ('echo "BODY $(ip netns exec $NSBOX_NETNS_C2 curl -s --max-time 2 http://127.0.0.1/host)"; '
            'echo "ADDR $(ip -n $NSBOX_NETNS_C2 -j -4 addr show dev eth0)"; '
            'echo "SAME $NSBOX_NETNS_C1 $NSBOX_NETNS_C2"')
    r = _run(nsbox, "container-mode", args, then)
    assert "BODY NODE: c1, POD IP:172.17.0.2" in r.stderr  # c2's loopback is c1's
    addr = json.loads(re.search(r"^ADDR (.*)$", r.stderr, re.M).group(1))
    assert addr[0]["addr_info"][0]["local"] == "172.17.0.2"
    same = re.search(r"^SAME (\S+) (\S+)$", r.stderr, re.M)
    assert same.group(1) == same.group(2)


def test_an_interfaces_check_fails_when_the_netns_has_more(nsbox, tmp_path):
    """The mutation of none-mode's check: a container that has a veth is not 'lo alone'."""
    (tmp_path / "m.py").write_text(textwrap.dedent('''
        from nsbox.recipe import recipe

        @recipe("not-none")
        def build(lab):
            """n1 has eth0 after all."""
            n1 = lab.node("n1")
            lab.veth(n1, "eth0", lab.host, "v1")
            lab.expect_interfaces(n1, ["lo"])
    '''))
    r = nsbox.run("run", "not-none", "--recipes", str(tmp_path), "--format", "json")
    assert r.returncode == 1, r.describe()
    assert r.result["checks"][0]["observed"] == "interfaces eth0, lo"


def test_publishing_in_these_modes_is_refused(nsbox, tmp_path):
    (tmp_path / "p.py").write_text(textwrap.dedent('''
        from nsbox.kits import docker as kit
        from nsbox.recipe import recipe

        @recipe("publish-none")
        def build(lab):
            """-p with --network none."""
            d = kit.Daemon(lab, lab.host)
            d.default_bridge()
            n = d.run("n1", "none", publish=["8080:80"])
            lab.expect_interfaces(n, ["lo"])
    '''))
    r = nsbox.run("run", "publish-none", "--recipes", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.describe()
    assert "-p has no meaning in this mode" in r.stderr
