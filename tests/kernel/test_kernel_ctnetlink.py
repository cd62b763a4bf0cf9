"""nsbox's own ctnetlink decoder (nsbox/wire/ctnetlink.py, used by the conntrack
observer) against conntrack-tools: the same entries, field for field.

A child in a throwaway netns (`unshare -n`) makes ICMP, TCP and UDP entries over
IPv4 and IPv6 on its loopback, then prints both what nsbox.observe.conntrack.dump
reads and what `conntrack -L` prints; the netns goes with the child."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.kernel

CHILD = r'''
import json, os, socket, subprocess, sys
from nsbox.observe import conntrack
run = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True)
run("ip link set lo up; iptables -A OUTPUT -m conntrack --ctstate NEW -j ACCEPT; "
    "ip6tables -A OUTPUT -m conntrack --ctstate NEW -j ACCEPT; ping -c1 -W1 127.0.0.1; ping -6 -c1 -W1 ::1")
keep = []
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam); srv.bind((addr, 8080)); srv.listen()
    keep += [srv, socket.create_connection((addr, 8080))]
    keep.append(srv.accept()[0])
    u = socket.socket(fam, socket.SOCK_DGRAM); u.sendto(b"x", (addr, 53)); keep.append(u)
ns = f"/proc/{os.getpid()}/ns/net"
ours = [e.render() for fam in (4, 6) for e in conntrack.dump(ns, fam)]
tool = run("conntrack -L -f ipv4; conntrack -L -f ipv6").stdout.splitlines()
print(json.dumps({"ours": ours, "tool": tool}))
'''


def _fields(line: str) -> tuple:
    """proto, TCP state and both tuples' key=value fields, as conntrack -L and Entry.render() both give them."""
    words = line.split()
    proto = words[0]
    state = next((w for w in words if re.fullmatch(r"[A-Z_]+", w)), None)
    pairs = [w for w in words if re.fullmatch(r"(src|dst|sport|dport|type|code|id)=\S+", w)]
    half = len(pairs) // 2
    return proto, state, tuple(pairs[:half]), tuple(pairs[half:])


@pytest.mark.skipif(shutil.which("conntrack") is None, reason="conntrack-tools is not installed")
def test_the_decoder_reads_what_conntrack_tools_prints():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, timeout=60, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    ours = sorted(_fields(x) for x in data["ours"])
    tool = sorted(_fields(x) for x in data["tool"] if x.strip() and not x.startswith("conntrack v"))
    assert ours == tool
    protos = {f[0] for f in ours}
    assert {"icmp", "icmpv6", "tcp", "udp"} <= protos, protos
    states = {f[1] for f in ours if f[0] == "tcp"}
    assert "ESTABLISHED" in states and len(ours) >= 6, ours
