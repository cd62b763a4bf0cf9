"""The layers, as written in pyproject.toml's [tool.importlinter] contracts, hold.

`lint-imports` (import-linter) reads every module of nsbox/ statically (grimp, lazy
imports inside functions included) and checks the contracts: the layer order, the
pure packages (wire, plan, validation, model) importing no effect/observer/host
module, `nsbox show` / `nsbox explain` importing none either, and no import circle
between sibling modules. The mutation tests copy nsbox/ and pyproject.toml into a
temporary directory, add one forbidden import to the copy, and check that the very
same checker then fails and names that import: a contract that cannot fail would
prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import paths

REPO = paths.REPO


def _lint_imports() -> str:
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install '.[test]')")
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.skip("lint-imports is not on PATH (pip install '.[test]')")
        exe = Path(found)
    return str(exe)


def _run(tree: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: grimp finds the package through the import system, so this is
    # TREE's nsbox, not an installed one. --no-cache: nothing written into TREE.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([_lint_imports(), "--no-cache", "--config", str(tree / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    done = _run(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "nsbox", tmp_path / "nsbox", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize("module, line, named", [
    # an arrow back up: show importing an effect (layers, show-explain contracts)
    ("plan/show.py", "from nsbox.kernel import realize", "nsbox.plan.show -> nsbox.kernel.realize"),
    # pure wire code touching the host (layers and pure contracts)
    ("wire/routing.py", "from nsbox.host import netns", "nsbox.wire.routing -> nsbox.host.netns"),
    # the model reaching the kernel, indirectly through an observer
    ("model/names.py", "from nsbox.observe import conntrack", "nsbox.model.names -> nsbox.observe.conntrack"),
    # a new circle between siblings: the host importing an effect that imports the host
    ("host/journal.py", "from nsbox.kernel import dad", "nsbox.host"),
])
def test_a_forbidden_import_breaks_a_contract(tree: Path, module: str, line: str, named: str):
    path = tree / "nsbox" / module
    path.write_text(path.read_text() + f"\n{line}  # mutation\n")
    done = _run(tree)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "BROKEN" in done.stdout and named in done.stdout, done.stdout[-3000:]


def test_show_and_explain_load_no_effect_observer_or_host_module():
    """At run time too (the contract above reads the source): importing them pulls in
    nothing from nsbox.kernel, nsbox.observe or nsbox.host."""
    code = ("import sys, nsbox.plan.show, nsbox.plan.explain, nsbox.plan.steps\n"
            "print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
            "(['nsbox', 'kernel'], ['nsbox', 'observe'], ['nsbox', 'host'])))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("modules", ["nsbox.model", "nsbox.validate", "nsbox.recipe",
                                     "nsbox.kinds.checks, nsbox.kinds.protocols, nsbox.kinds.ruleref",
                                     "nsbox.plan.show, nsbox.plan.explain"])
def test_the_kinds_vertical_slices_reach_up_only_when_called(modules):
    """The contract lets a check or protocol kind import the verifier, servers and observers
    (pyproject.toml: one module holds everything about its kind), but only inside the
    functions that run them. So importing the model, validation, a recipe's API or the kinds
    themselves loads no effect, observer, host, verifier or server module: only
    verify.results (CheckResult, plain dataclasses)."""
    code = (f"import sys, {modules}\n"
            "print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
            "(['nsbox', 'kernel'], ['nsbox', 'observe'], ['nsbox', 'host'], ['nsbox', 'sandbox'], "
            "['nsbox', 'artifacts'], ['nsbox', 'session']) or (m.startswith('nsbox.verify.') "
            "and m != 'nsbox.verify.results')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "", done.stdout
