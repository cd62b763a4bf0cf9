"""What operstate a veth shows when its peer is down, as `ip -j link` reads it on this kernel
(nsbox's set_link docs and DESIGN.md state it; this pins it).

The kernel (net/core/link_watch.c, default_operstate) gives a device without carrier
LOWERLAYERDOWN when the device its iflink names is not oper-up, else DOWN -- but it looks
that ifindex up in the veth's OWN namespace. Both ends in one netns: the real peer,
LOWERLAYERDOWN. Peer in another netns: whatever device holds the peer's ifindex here; none
(or the veth itself) gives DOWN, a down device that happens to hold it gives LOWERLAYERDOWN.
So across namespaces the state says nothing about the peer: in a lab, DOWN is the usual
answer and LOWERLAYERDOWN a coincidence of ifindex numbering.

Runs in a throwaway user+net+mount namespace (unshare), so nothing touches the host.
"""

import json
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "unshare")]

# Two named netns inside a private mount namespace (/run/netns on a tmpfs): A's veth `va`
# is up, its peer `vb` in B stays down; `same` is a pair inside A with `sameb` down.
# LAYOUT=clash first makes a down pair in A, so the ifindex vb gets in B (2) names a down
# device in A as well.
SCRIPT = r"""
set -e
mount -t tmpfs none /run
mkdir -p /run/netns
ip netns add A; ip netns add B
if [ "$LAYOUT" = clash ]; then ip -n A link add xa type veth peer name xb; fi
ip -n A link add va type veth peer name vb netns B
ip -n A link add same type veth peer name sameb
ip -n A link set va up
ip -n A link set same up
sleep 0.3
ip -n A -j link show
echo ---
ip -n B -j link show
"""


def links(layout: str) -> tuple[dict, dict]:
    cp = subprocess.run(["unshare", "--mount", "--propagation", "private", "--net", "sh", "-c", SCRIPT],
                        env={"LAYOUT": layout, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    a, b = cp.stdout.split("---")
    return ({l["ifname"]: l for l in json.loads(a)}, {l["ifname"]: l for l in json.loads(b)})


def test_peer_in_another_netns_shows_down():
    a, b = links("plain")
    assert b["vb"]["operstate"] == "DOWN"
    # va's iflink (vb's index in B) is no down device of A: DOWN, with NO-CARRIER.
    assert a["va"]["operstate"] == "DOWN", a["va"]
    assert "NO-CARRIER" in a["va"]["flags"]
    # The same situation with both ends in A: LOWERLAYERDOWN.
    assert a["same"]["operstate"] == "LOWERLAYERDOWN", a["same"]


def test_peer_in_another_netns_may_show_lowerlayerdown_by_ifindex_clash():
    a, b = links("clash")
    # vb's index in B is also the index of a down device of A (xb or xa): the kernel looks
    # it up in A and reports LOWERLAYERDOWN for va, though its real peer is in B.
    clash = [n for n, l in a.items() if l["ifindex"] == b["vb"]["ifindex"]]
    assert clash and clash[0] in ("xa", "xb"), (clash, b["vb"]["ifindex"])
    assert a["va"]["operstate"] == "LOWERLAYERDOWN", a["va"]
