"""The package as pip builds it: `pip wheel` from a copy of this checkout, installed (not
editable) into a fresh virtualenv outside the checkout, then used from a directory that is
not the checkout. A hand-written package list once left seven subpackages out of the wheel:
every recipe and `explain` failed with ModuleNotFoundError while `doctor` said "usable".

The fresh venv gets nsbox from the wheel only: its dependencies are linked in from the
environment running the tests (every top-level entry of that site-packages except nsbox's
own and pip's), so the test needs no network and no compiler and takes a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.support.cmd import describe
from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.tools("ip", "unshare")]

# What the wheel is built from: the files `pip wheel .` reads (setup.py derives the package list).
SOURCES = ("nsbox", "recipes", "pyproject.toml", "setup.py", "README.md")
# Entries of the dependencies' site-packages the fresh venv must not see: nsbox itself (an
# editable or an installed copy) and the packaging tools.
NOT_DEPS = ("nsbox", "__editable__", "_distutils_hack", "pip", "setuptools", "pkg_resources", "__pycache__")


def _setuptools_ok() -> str:
    """Why the wheel cannot be built offline here, or ""."""
    try:
        v = version("setuptools")
    except PackageNotFoundError:
        return "setuptools is not installed (pip install -e '.[test]' installs it)"
    major = int(v.split(".")[0]) if v.split(".")[0].isdigit() else 0
    return "" if major >= 77 else f"setuptools {v} < 77 ([build-system] needs 77; pip install -e '.[test]')"


def _run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    cp = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return cp


def _build_wheel(work: Path, env: dict[str, str]) -> Path:
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if not p.exists():
            continue
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    cp = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--no-cache-dir", "--disable-pip-version-check", "-q", "-w", work / "dist", src], work, env)
    assert cp.returncode == 0, describe(cp)
    wheels = list((work / "dist").glob("nsbox-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(work: Path, wheel: Path, env: dict[str, str]) -> Path:
    venv = work / "venv"
    base = getattr(sys, "_base_executable", "") or sys.executable
    cp = _run([base, "-m", "venv", "--without-pip", venv], work, env)
    assert cp.returncode == 0, describe(cp)
    cp = _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps",
               "--no-index", "--no-cache-dir", "--disable-pip-version-check", "-q", wheel], work, env)
    assert cp.returncode == 0, describe(cp)
    # the dependencies: linked from the site-packages that holds pyroute2 here
    spec = importlib.util.find_spec("pyroute2")
    assert spec is not None and spec.origin
    site = Path(spec.origin).resolve().parents[1]
    deps = work / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(NOT_DEPS) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    purelib = Path(_venv_path(venv, "purelib", env))
    (purelib / "nsbox-test-deps.pth").write_text(f"{deps}\n")
    return venv


def _venv_path(venv: Path, which: str, env: dict[str, str]) -> str:
    cp = _run([venv / "bin" / "python", "-c", f"import sysconfig; print(sysconfig.get_paths()[{which!r}])"],
              venv, env)
    assert cp.returncode == 0, describe(cp)
    return cp.stdout.strip()


def test_the_wheel_holds_every_module_and_runs_from_a_fresh_venv(tmp_path: Path) -> None:
    why = _setuptools_ok()
    if why:
        pytest.skip(why)
    work = tmp_path.resolve()
    # nothing of this checkout on the path, no NSBOX_* settings: what a user's shell has
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("NSBOX_")}
    env.pop("PYTHONHOME", None)
    wheel = _build_wheel(work, env)

    # every module under nsbox/ (and every shipped recipe, as nsbox/_recipes) is in the wheel
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    want = {p.relative_to(REPO).as_posix() for p in (REPO / "nsbox").rglob("*.py") if "__pycache__" not in p.parts}
    want |= {f"nsbox/_recipes/{p.name}" for p in (REPO / "recipes").glob("*.py")}
    assert not want - in_wheel, f"modules missing from the wheel: {sorted(want - in_wheel)}"
    assert not in_wheel - want, f"files in the wheel that are not nsbox's: {sorted(in_wheel - want)}"

    venv = _fresh_venv(work, wheel, env)
    outside = work / "elsewhere"
    outside.mkdir()
    nsbox = venv / "bin" / "nsbox"

    cp = _run([venv / "bin" / "python", "-c", "import nsbox, nsbox.recipe as r; "
               "print(nsbox.__file__); print(*r.builtin_dirs())"], outside, env)
    assert cp.returncode == 0, describe(cp)
    module, recipes = cp.stdout.split()
    purelib = _venv_path(venv, "purelib", env)
    assert module.startswith(purelib + "/"), f"nsbox imported from {module}, not the fresh venv"
    assert recipes == f"{purelib}/nsbox/_recipes"  # the shipped recipes, not a checkout's

    run = _run([nsbox, "run", "bridge-mode", "--format", "json"], outside, env, timeout=180)
    assert run.returncode == 0, describe(run)
    result = json.loads(run.stdout)["results"][0]
    assert result["recipe"] == "bridge-mode" and result["checks"], result
    assert result["status"] == "pass" and all(c["passed"] for c in result["checks"]), result

    explain = _run([nsbox, "explain", "bridge-mode"], outside, env)
    assert explain.returncode == 0, describe(explain)
    assert explain.stdout.startswith("#!/bin/bash") and "docker0" in explain.stdout and "netns" in explain.stdout

    doctor = _run([nsbox, "doctor", "--format", "json"], outside, env)
    assert doctor.returncode == 0, describe(doctor)
    install = {i["name"]: i["state"] for i in json.loads(doctor.stdout)["install"]}
    assert install == {"nsbox modules": "present", "shipped recipes": "present"}, doctor.stdout

    # `nsbox --help` and `nsbox list` come from the shipped index (nsbox.fastpath): the bytes
    # click and the recipe jail print, and neither click nor the jail loaded to print them
    py = venv / "bin" / "python"
    wide = {k: v for k, v in env.items() if k != "COLUMNS"}
    for args in (["--help"], ["list"], ["list", "--format", "json"]):
        fast = _run([nsbox, *args], outside, wide)
        slow = _run([py, "-c", f"from nsbox.cli import main; main({args!r}, prog_name='nsbox')"], outside, wide)
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args
        timed = _run([py, "-X", "importtime", "-m", "nsbox", *args], outside, wide)
        got = {ln.rsplit("|", 1)[1].strip() for ln in timed.stderr.splitlines() if ln.startswith("import time:")}
        assert "click" not in got and "nsbox.sandbox.jail" not in got, (args, sorted(got))

    # the install the old package list made (no nsbox.kits, no nsbox.plan): doctor calls it broken
    for sub in ("kits", "plan"):
        shutil.rmtree(Path(purelib) / "nsbox" / sub)
    broken = _run([nsbox, "doctor"], outside, env)
    assert broken.returncode == 2, describe(broken)
    assert "BROKEN shipped recipes" in broken.stdout and "No module named 'nsbox.kits'" in broken.stdout
    assert "nsbox.plan" in broken.stdout, broken.stdout  # what `explain` imports only when it runs
