"""Link kinds (nsbox/kinds/links/) in real labs: what the kernel holds, read with
`ip -j -d link`, is what the spec says; traffic crosses them; a kind this
kernel lacks makes its recipe SKIP; `nsbox explain` rebuilds them by hand."""

import json
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.explain_harness import run_script_and_verify
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "unshare")]

RECIPES = str(DATA / "kinds")


def _run_and_dump(nsbox, recipe: str, node: str, iface: str, tmp_path) -> dict:
    out = tmp_path / "link.json"
    run = nsbox.run("run", recipe, "--recipes", RECIPES, "--format", "json",
                    "--then", f"ip -n {node} -j -d link show {iface} > {out}")
    assert run.returncode == 0, run.describe()
    assert run.result["status"] == "pass" and all(c["passed"] for c in run.result["checks"]), run.result
    [link] = json.loads(out.read_text())
    return link


def test_macvlan_bridge_children_on_a_lan_veth(nsbox, tmp_path):
    """child<->child and LAN<->child pass, host->child is denied (the recipe's checks)."""
    link = _run_and_dump(nsbox, "macvlan-lan", "c1", "eth0", tmp_path)
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    assert link["operstate"] in ("UP", "UNKNOWN")


def test_vxlan_options_in_the_kernel(nsbox, tmp_path):
    link = _run_and_dump(nsbox, "vxlan-pair", "a", "vx0", tmp_path)
    assert link["linkinfo"]["info_kind"] == "vxlan"
    data = link["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["remote"], data["link"], data["learning"]) == \
        (42, 4789, "192.168.50.1", "192.168.50.2", "eth0", False)


def _kernel_has(kind: str) -> bool:
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "ip", "link", "add", "x0", "type", kind],
                          capture_output=True, check=False)
    return done.returncode == 0


def test_dummy_skips_where_the_kernel_lacks_it(nsbox):
    run = nsbox.run("run", "dummy-ip", "--recipes", RECIPES, "--format", "json")
    if _kernel_has("dummy"):
        assert run.returncode == 0 and run.result["status"] == "pass", run.describe()
    else:
        assert run.returncode == 4, run.describe()  # everything skipped (kselftest's convention)
        assert run.result["status"] == "skip", run.result
        assert "dummy" in json.dumps(run.result)


@pytest.mark.parametrize("recipe", ["macvlan-lan", "vxlan-pair"])
def test_explained_kinds_rebuild_by_hand(nsbox, recipe, tmp_path):
    explained = nsbox.run("explain", recipe, "--recipes", RECIPES)
    assert explained.returncode == 0, explained.describe()
    done = run_script_and_verify(explained.stdout, recipe, tmp_path, recipes_dir=RECIPES)
    assert done.returncode == 0, f"{explained.stdout}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
