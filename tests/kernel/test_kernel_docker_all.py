"""Issue 7's "done when": every Docker recipe in one `nsbox run`, for each docker= layout,
in the sandbox and on the host: exit 0, each recipe passes (ipvlan-mode and the 802.1q
variant SKIP with their reasons where the kernel lacks them), and nothing is left behind
(the host guard, tests/support/host.py)."""

from __future__ import annotations

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.explain_harness import shipped_recipes

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]

DOCKER = [r for r in ("host-mode", "none-mode", "container-mode", "macvlan-mode", "ipvlan-mode", "port-publish",
                      "user-networks") if r in shipped_recipes()]


@pytest.mark.parametrize("where", [[], ["--on-host"]], ids=["sandbox", "on-host"])
@pytest.mark.parametrize("layout", ["29", "29-nftables", "20.10"])
def test_every_docker_recipe_in_one_run(nsbox, layout, where):
    r = nsbox.run("run", *DOCKER, "--set", f"docker={layout}", *where, "--timeout", "0.3", "--format", "json",
                  timeout=300)
    assert r.returncode == 0, r.describe()
    results = {x["recipe"]: x for x in r.json["results"]}
    assert set(results) == set(DOCKER)
    for name, res in results.items():
        if res["status"] == "skip":
            assert name == "ipvlan-mode" and res["skip_reason"] == "this kernel lacks ipvlan (Operation not supported)"
        else:
            assert res["status"] == "pass" and res["checks"], (name, res)
            assert all(c["passed"] for c in res["checks"]), (name, res)
