"""The model additions the CNI layouts need, in the kernel (tests/data/cni_model/).

- ptp's pod written faithfully, two ways: pod1 as the plugin does it (delete_route of the
  kernel's prefix route), pod2 with a noprefixroute address (`ip -j addr` shows the flag);
  for pod1 `ip -j route` no connected 10.89.0.0/24 route, but `10.89.0.0/24 via 10.89.0.1`;
  pod-to-pod traffic passes; expect_route checks pass.
- Mutation: the kernel's prefix route kept instead of ptp's `SUBNET via GW` (the
  unfaithful recipe): the expect_route check judged by the kernel's lookup fails (the
  neighbour pod is "direct"), the kernel's own `ip route get` agrees, and pod1->pod2 fails
  (nobody answers ARP for 10.89.0.3 on the point-to-point link).
- blackhole/unreachable/prohibit: `ip -j route` shows the types; expect_route passes.
- Validation follows the kernel (the explained script run by bash, test_kernel_routing's
  harness): a ptp route over the prefix route (EEXIST, with the hint), a blackhole with a
  device, a delete of no route are refused by both; ptp by deletion, ptp by noprefixroute
  and the dropping route types are accepted by both.
"""

from __future__ import annotations

import json

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip")]

RECIPES = str(DATA / "cni_model")


def _run(nsbox, *args: str, then: str = ""):
    argv = ["run", "ptp-pod", "--recipes", RECIPES, "--format", "json", *args]
    if then:
        argv += ["--then", then]
    return nsbox.run(*argv, timeout=120)


def test_ptp_pod_noprefixroute_and_route_types(nsbox, tmp_path):
    out = tmp_path
    run = _run(nsbox, then=f"ip -n $NSBOX_NETNS_POD2 -j addr show dev eth0 > {out}/addr.json; "
                           f"ip -n $NSBOX_NETNS_POD1 -j addr show dev eth0 > {out}/addr1.json; "
                           f"ip -n $NSBOX_NETNS_POD1 -j route show > {out}/route.json; "
                           f"ip -n $NSBOX_NETNS_POD1 route get 10.89.0.3 > {out}/get.txt")
    assert run.returncode == 0, run.describe()
    checks = run.result["checks"]
    assert all(c["passed"] for c in checks), checks
    assert {c["kind"] for c in checks} == {"reach", "route"}
    [addr] = [a for i in json.loads((out / "addr.json").read_text()) for a in i["addr_info"] if a["family"] == "inet"]
    assert (addr["local"], addr["prefixlen"], addr.get("noprefixroute")) == ("10.89.0.3", 24, True), addr
    # pod1: the plugin's way, a plain address whose prefix route was deleted.
    [addr1] = [a for i in json.loads((out / "addr1.json").read_text()) for a in i["addr_info"]
               if a["family"] == "inet"]
    assert (addr1["local"], addr1["prefixlen"], addr1.get("noprefixroute")) == ("10.89.0.2", 24, None), addr1
    routes = json.loads((out / "route.json").read_text())
    by_dst = {r["dst"]: r for r in routes}
    assert "protocol" not in by_dst["10.89.0.0/24"] or by_dst["10.89.0.0/24"]["protocol"] != "kernel"
    assert by_dst["10.89.0.0/24"]["gateway"] == "10.89.0.1", by_dst
    assert (by_dst["10.89.0.1"]["scope"], by_dst["10.89.0.1"]["prefsrc"]) == ("link", "10.89.0.2")
    assert {by_dst[d].get("type") for d in ("10.200.0.0/16", "10.201.0.0/16", "10.202.0.0/16")} == \
        {"blackhole", "unreachable", "prohibit"}, routes
    assert "via 10.89.0.1 dev eth0 src 10.89.0.2" in (out / "get.txt").read_text()


def test_expect_route_fails_without_the_ptp_subnet_route(nsbox, tmp_path):
    out = tmp_path
    run = _run(nsbox, "--set", "broken=1", "--settle", "0.5",
               then=f"ip -n $NSBOX_NETNS_POD1 route get 10.89.0.3 > {out}/get.txt")
    assert run.returncode == 1, run.describe()
    checks = run.checks()
    bad = checks["route pod1: subnet via gateway"]
    assert not bad["passed"], bad
    assert bad["observed"].startswith("unicast direct"), bad
    assert not checks["tcp/7 pod1->pod2"]["passed"]
    assert checks["route pod1: gateway on the link"]["passed"]
    assert checks["route node: pod2 /32"]["passed"]
    assert "via" not in (out / "get.txt").read_text()


# -- validation follows the kernel: refusals and acceptances shown by the explained script --
# (tests/kernel/test_kernel_routing.py's harness: the lab's `nsbox explain` script run by bash in a
# throwaway user+net+mount namespace; for a refusal, everything but the refused line works.)

from tests.support.explain_harness import (assert_accepted_as_the_kernel_accepts,  # noqa: E402
                                           assert_refused_as_the_kernel_refuses, base_lab)

REFUSED = [
    ("ptp-route-over-the-prefix-route", lambda lab: lab.nodes["a"].route("10.0.0.0/24", via="10.0.0.1", dev="eth0"),
     ("EEXIST", "ptp plugin deletes that prefix route", "noprefixroute=True"), "File exists"),
    ("blackhole-with-a-device", lambda lab: lab.nodes["a"].route("10.9.0.0/16", dev="eth0", type="blackhole"),
     ("takes no gateway, device",), "can not be specified for this route type"),
    ("delete-of-no-route", lambda lab: lab.nodes["a"].delete_route("10.77.0.0/24", dev="eth0"),
     ("finds no such route", "ESRCH"), "No such process"),
]


@pytest.mark.parametrize("add, words, kernel_says", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_as_the_kernel_refuses(add, words, kernel_says, tmp_path):
    lab = base_lab()
    add(lab)
    assert_refused_as_the_kernel_refuses(lab, "a", words, kernel_says, tmp_path)


def _ptp_by_deletion(lab):
    a = lab.nodes["a"]
    a.delete_route("10.0.0.0/24", dev="eth0")
    a.route("10.0.0.1", dev="eth0", scope="link", src="10.0.0.2")
    a.route("10.0.0.0/24", via="10.0.0.1", dev="eth0", src="10.0.0.2")


def _ptp_by_noprefixroute(lab):
    a = lab.node("b")
    lab.veth(a, "eth0", lab.host, "p1", b_master="br0")
    a.address("eth0", "10.0.0.3/24", noprefixroute=True)
    a.route("10.0.0.1", dev="eth0", scope="link", src="10.0.0.3")
    a.route("10.0.0.0/24", via="10.0.0.1", dev="eth0", src="10.0.0.3")


ACCEPTED = [
    ("ptp-by-deleting-the-prefix-route", _ptp_by_deletion),
    ("ptp-by-noprefixroute", _ptp_by_noprefixroute),
    ("dropping-route-types", lambda lab: lab.nodes["a"].route("10.9.0.0/16", type="blackhole")
     .route("10.8.0.0/16", type="unreachable").route("10.7.0.0/16", type="prohibit", table=100)),
]


@pytest.mark.parametrize("add", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_as_the_kernel_accepts(add, tmp_path):
    lab = base_lab()
    add(lab)
    assert_accepted_as_the_kernel_accepts(lab, tmp_path)