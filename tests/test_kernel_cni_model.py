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
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip")]

RECIPES = str(Path(__file__).resolve().parent / "data" / "cni_model")


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
