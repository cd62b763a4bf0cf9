"""doctor's judgement, without root or a kernel: which answers make nsbox unusable, and how
recipes are judged from the features they require."""

from __future__ import annotations

import json

from nsbox import doctor
from nsbox.doctor import BuiltRecipe, Item, Report
from nsbox.errors import InstallError, missing_module
from nsbox.model import Lab


def _lab(name: str, *requires: str) -> Lab:
    lab = Lab(name)
    lab.require(*requires)
    return lab


FEATURES = [Item("veth", "present"), Item("nat", "present"),
            Item("ipvlan", "missing", "this kernel lacks ipvlan (Operation not supported)"),
            Item("vxlan", "broken", "not probed: pyroute2 is broken")]


def test_recipes_are_judged_by_what_they_require() -> None:
    built = [BuiltRecipe("plain", _lab("plain", "veth", "nat")), BuiltRecipe("l3", _lab("l3", "veth", "ipvlan")),
             BuiltRecipe("overlay", _lab("overlay", "vxlan")), BuiltRecipe("bad.py", None, "SyntaxError")]
    got = {r.name: r for r in doctor._recipes(built, FEATURES, "", root=True)}
    assert got["plain"].can_run and got["plain"].requires == ["nat", "veth"]
    assert not got["l3"].can_run and "ipvlan missing: this kernel lacks ipvlan" in got["l3"].reason
    assert not got["overlay"].can_run and "installation is broken" in got["overlay"].reason
    assert not got["bad.py"].can_run and "SyntaxError" in got["bad.py"].reason


def test_without_a_sandbox_root_runs_on_host_and_others_cannot() -> None:
    built = [BuiltRecipe("plain", _lab("plain", "veth"))]
    as_root = doctor._recipes(built, FEATURES, "user namespaces are disabled", root=True)[0]
    as_user = doctor._recipes(built, FEATURES, "user namespaces are disabled", root=False)[0]
    assert as_root.can_run and "--on-host" in as_root.reason
    assert not as_user.can_run and "user namespaces are disabled" in as_user.reason


def test_only_broken_makes_nsbox_unusable() -> None:
    fine = Report(python=[Item("pyroute2", "present")], features=FEATURES[:3],
                  tools=[Item("nft", "missing", "not on PATH", "apt install nftables")])
    assert fine.usable  # a missing kernel feature or optional tool is not a broken install
    broken = Report(python=[Item("pyroute2", "broken", "not installed")], features=FEATURES, tools=[])
    assert not broken.usable
    data = json.loads(json.dumps(broken.to_json()))
    assert data["nsbox"]["usable"] is False and "pyroute2: not installed" in data["nsbox"]["broken"]
    assert {f["name"]: f["state"] for f in data["features"]}["ipvlan"] == "missing"
    text = doctor.render_text(broken)
    assert "BROKEN pyroute2" in text and text.rstrip().endswith("installation is broken: pyroute2 (see BROKEN above).")


def test_a_probe_that_could_not_run_points_at_the_package() -> None:
    pkg = Item("pyroute2", "broken", "the Python package pyroute2 is not installed", "pip install pyroute2")
    item = doctor._blame(Item("veth", "broken", pkg.detail), [pkg])
    assert item.state == "broken" and "pyroute2 is broken" in item.detail and item.fix == "pip install pyroute2"


def test_missing_module_names_only_our_dependencies() -> None:
    err = missing_module(ModuleNotFoundError("No module named 'pyroute2'", name="pyroute2"))
    assert isinstance(err, InstallError) and err.exit_code == 2
    assert "pip install pyroute2" in str(err) and "install.sh" in str(err) and "\n" not in str(err)
    assert "python-iptables" in str(missing_module(ModuleNotFoundError("x", name="iptc.xtables")))
    assert missing_module(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    # PyYAML reads `nsbox run ./app.yaml` manifests: one of ours since then
    assert "pip install PyYAML" in str(missing_module(ModuleNotFoundError("x", name="yaml")))


def test_a_shipped_recipe_that_does_not_load_is_a_broken_install() -> None:
    """A shipped recipe that fails to import (a wheel without nsbox.kits) is nsbox's install
    being broken, exit 2; a user's own broken recipe is only that recipe's problem."""
    ok = BuiltRecipe("bridge-mode", _lab("bridge-mode", "veth"), shipped=True)
    bad = BuiltRecipe("none_mode.py", None, "ModuleNotFoundError: No module named 'nsbox.kits'", shipped=True)
    mine = BuiltRecipe("mine.py", None, "SyntaxError", shipped=False)
    assert doctor._shipped_recipes([ok, mine]).state == "present"
    item = doctor._shipped_recipes([ok, bad, mine])
    assert item.state == "broken" and "none_mode.py" in item.detail and "nsbox.kits" in item.detail
    assert not Report(install=[item]).usable
    assert "BROKEN shipped recipes" in doctor.render_text(Report(install=[item]))
    assert doctor._shipped_recipes([mine]).state == "broken"  # no shipped recipe found at all


def test_every_shipped_recipe_is_found_loaded_and_marked_shipped() -> None:
    from nsbox.recipe import builtin_dirs
    shipped = {p.stem.replace("_", "-") for d in builtin_dirs() for p in d.glob("*.py")}
    built = doctor._build_all(())
    assert {b["name"] for b in built if b["shipped"]} == shipped
    assert all(b["error"] == "" for b in built), [b for b in built if b["error"]]


def test_nsbox_modules_reads_imports_and_finds_the_missing_ones() -> None:
    import ast
    tree = ast.parse("import nsbox.kits\nfrom nsbox.plan.explain import script\nfrom nsbox import nothere\n"
                     "from nsbox.model.lab import FEATURES\nimport os\n")
    names = doctor._nsbox_imports(tree)
    assert names == {"nsbox.kits", "nsbox.plan.explain", "nsbox.plan.explain:script", "nsbox",
                     "nsbox:nothere", "nsbox.model.lab", "nsbox.model.lab:FEATURES"}
    assert all(doctor._module_exists(n) for n in names - {"nsbox:nothere"})
    assert not doctor._module_exists("nsbox:nothere")
    assert not doctor._module_exists("nsbox.kits.nothere")
    assert not doctor._module_exists("nsbox.model.lab:NOTHERE")
    assert doctor._nsbox_modules().state == "present"  # this checkout is complete
