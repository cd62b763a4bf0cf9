"""Mutants: a shipped recipe with one piece of its layout taken away, run by nsbox.

A mutant shows that a check can fail for the reason it names: the test writes a recipe file
that builds the shipped recipe and then removes or breaks one thing, runs it, and asserts
that exactly the checks depending on that thing fail.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.runner import Nsbox, NsboxRun, shipped_recipe_import

# a mutant's checks are expected to fail: do not wait long for what will not answer
MUTANT_OPTIONS = ("--format", "json", "--timeout", "0.5", "--settle", "0.5")


def run_mutant(nsbox: Nsbox, folder: Path, name: str, body: str, *, base: str, alias: str,
               then: str | None = None, env: dict[str, str] | None = None, timeout: float = 180,
               options: tuple[str, ...] = MUTANT_OPTIONS) -> NsboxRun:
    """Run recipe NAME defined by BODY (its @recipe function, indented as you like, after
    any imports of its own), which builds on recipes/BASE imported as ALIAS (under a name
    of its own: imported as a recipe module it would define BASE's recipe a second time).
    The recipe file is FOLDER/mutant.py; --then THEN when given."""
    (folder / "mutant.py").write_text(shipped_recipe_import(alias, base) + textwrap.dedent(body).lstrip("\n"))
    args = ["run", name, "--recipes", str(folder), *options]
    if then is not None:
        args += ["--then", then]
    return nsbox.run(*args, env=env, timeout=timeout)


def failed_checks(run: NsboxRun) -> set[str]:
    """The names of RUN's checks that did not pass."""
    return {n for n, c in run.checks().items() if not c["passed"]}
