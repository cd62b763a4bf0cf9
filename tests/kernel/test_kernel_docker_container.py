"""The container as Docker makes it, in the kernel (issue 14, item 7), read with ip -j
link and /proc inside the live lab: eth0's MAC (20.10: from the IPv4 address, as the
real dockerd 20.10 gives 172.17.0.2 02:42:ac:11:00:02; 29: random, locally administered
unicast), txqueuelen 0 on eth0 and docker0 (netlink's TxQLen 0), IPv6 off where Docker
turns it off (20.10: all, default, lo and eth0; 29: eth0), and the runtime's
ping_group_range and ip_unprivileged_port_start (on the host: in nsbox's user-namespace
sandbox moby would skip ping_group_range; the sandbox run shows the kernel's default)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections as _sections

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]

THEN = ('echo "@@ eth0"; ip -n $NSBOX_NETNS_C1 -j -d link show eth0; '
        'echo "@@ docker0"; ip -j -d link show docker0; '
        'echo "@@ qlen"; ip netns exec $NSBOX_NETNS_C1 cat /sys/class/net/eth0/tx_queue_len; '
        'ip netns exec $NSBOX_NETNS_HOST cat /sys/class/net/docker0/tx_queue_len; '
        'echo "@@ lo6"; ip -n $NSBOX_NETNS_C1 -6 -o addr show dev lo; '
        'echo "@@ sysctl"; ip netns exec $NSBOX_NETNS_C1 sh -c \'for k in all default lo eth0; do '
        'echo "$k=$(cat /proc/sys/net/ipv6/conf/$k/disable_ipv6)"; done; '
        'echo "ping=$(cat /proc/sys/net/ipv4/ping_group_range)"; '
        'echo "unpriv=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"\'')


@pytest.mark.parametrize("docker", ["20.10", "29"])
def test_the_container_as_docker_makes_it(nsbox, docker):
    # --on-host: in nsbox's sandbox (a user namespace mapping root alone) moby itself
    # would skip ping_group_range (RunningInUserNS), and so does the kit.
    r = nsbox.run("run", "bridge-mode", "--on-host", "--set", f"docker={docker}", "--timeout", "0.5",
                  "--format", "json", "--then", THEN)
    assert r.returncode == 0, r.describe()
    s = _sections(r.stderr)
    eth0 = json.loads(s["eth0"])[0]
    docker0 = json.loads(s["docker0"])[0]
    # sysfs, not ip -j (which leaves a zero qlen out): eth0's, then docker0's
    assert s["qlen"].split() == ["0", "0"], s["qlen"]
    mac = eth0["address"]
    first = int(mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01, mac  # locally administered, unicast
    if docker == "20.10":
        assert mac == "02:42:ac:11:00:02", mac
        assert docker0["address"].startswith("02:42:"), docker0["address"]
    else:
        assert not mac.startswith("02:42:ac:11"), mac
    sysctl = dict(line.split("=", 1) for line in s["sysctl"].splitlines())
    assert re.search(r"^ping=0\s+2147483647$", s["sysctl"], re.M), s["sysctl"]
    assert sysctl["unpriv"] == "0"
    assert sysctl["eth0"] == "1"
    off = {k for k in ("all", "default", "lo") if sysctl[k] == "1"}
    if docker == "20.10":
        assert off == {"all", "default", "lo"}, s["sysctl"]
        assert s["lo6"].strip() == "", s["lo6"]  # no ::1 on lo
    else:
        assert off == set(), s["sysctl"]
        assert "::1/128" in s["lo6"], s["lo6"]


def test_in_the_sandbox_ping_group_range_is_left_as_moby_leaves_it_in_a_user_namespace(nsbox):
    r = nsbox.run("run", "bridge-mode", "--set", "docker=20.10", "--timeout", "0.5", "--format", "json",
                  "--then", "ip netns exec $NSBOX_NETNS_C1 cat /proc/sys/net/ipv4/ping_group_range "
                            "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert r.returncode == 0, r.describe()
    # the kernel's default range "1 0" (gid 1 is unmapped here: shown as the overflow gid); port start 0
    assert re.search(r"^\d+\s+0\n0$", r.stderr, re.M) and "2147483647" not in r.stderr, r.stderr
