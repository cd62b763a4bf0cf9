"""bridge-mode's links as dockerd makes them (issue 6, item 10): docker0 has a fixed
MAC, so removing a container does not change the gateway MAC its neighbours cached;
accept_ra=0 on docker0; the host ends of the veths have txqueuelen 0. Read inside
the live lab with `ip -j`, `sysctl` and `ip link del`, not from nsbox's report."""

import json
import os

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "sysctl")]

# Runs in the lab's host namespace (--then). Negative control first: a bridge
# without a fixed MAC takes its lowest port's MAC and changes when that port goes.
THEN = r"""
set -e
ip link add brx type bridge
ip link add pa address 02:00:00:00:00:01 type veth peer name qa
ip link add pb address 02:00:00:00:00:02 type veth peer name qb
ip link set pa master brx; ip link set pb master brx
ip -j link show brx > {out}/brx-before.json
ip link del pa
ip -j link show brx > {out}/brx-after.json
ip -j link show docker0 > {out}/before.json
ip -j link show master docker0 > {out}/ports.json
(sysctl -n net.ipv6.conf.docker0.accept_ra 2>/dev/null || echo absent) > {out}/accept_ra
c1_port=$(ip -j link show master docker0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ifname"])')
ip link del "$c1_port"
ip -j link show docker0 > {out}/after.json
ip -j link show master docker0 > {out}/ports-after.json
"""


def _mac(path) -> str:
    [link] = json.loads(path.read_text())
    return link["address"]


def test_docker0_mac_fixed_accept_ra_off_host_veths_qlen_0(nsbox, tmp_path):
    run = nsbox.run("run", "bridge-mode", "--format", "json", "--then", THEN.format(out=tmp_path))
    assert run.returncode == 0, run.describe()
    # the kernel's own behaviour, which the fixed MAC exists to avoid
    assert _mac(tmp_path / "brx-before.json") == "02:00:00:00:00:01"
    assert _mac(tmp_path / "brx-after.json") == "02:00:00:00:00:02"
    # docker0 keeps its MAC while a port goes away
    ports = json.loads((tmp_path / "ports.json").read_text())
    assert len(ports) == 2 and len(json.loads((tmp_path / "ports-after.json").read_text())) == 1
    assert _mac(tmp_path / "before.json") == _mac(tmp_path / "after.json") == "b2:7c:4e:1a:9d:30"
    # ip -j leaves qlen out when it is 0; a veth's default is 1000
    assert all(p.get("txqlen", 0) == 0 for p in ports), ports
    accept_ra = (tmp_path / "accept_ra").read_text().strip()
    # the default is 1; "absent" only on a kernel without IPv6
    assert accept_ra == ("0" if os.path.exists("/proc/sys/net/ipv6") else "absent"), accept_ra
