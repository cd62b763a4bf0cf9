"""Running this checkout's nsbox as the user would, and running a script in a private /run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tests.support.paths import REPO


@dataclass
class NsboxRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"stdout is not one JSON object ({e}):\n{self.describe()}") from None

    @property
    def result(self) -> dict:
        results = self.json["results"]
        assert len(results) == 1, results
        return results[0]

    def checks(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.result["checks"]}

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}"
                f"\n--- stderr\n{self.stderr[-4000:]}")


class Nsbox:
    """Runs `python -m nsbox` from this checkout, as the user would."""

    def __init__(self, python: str = sys.executable, cwd: Path = REPO) -> None:
        self.python = python
        self.cwd = cwd

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
        env["PYTHONPATH"] = str(self.cwd)
        env.update(extra or {})
        return env

    def argv(self, args: Iterable[str]) -> list[str]:
        return [self.python, "-m", "nsbox", *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> NsboxRun:
        argv = self.argv(args)
        try:
            cp = subprocess.run(argv, cwd=self.cwd, env=self.env(env), capture_output=True, text=True,
                                timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"nsbox did not finish within {timeout} s: {' '.join(argv)}\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        return NsboxRun(argv, cp.returncode, cp.stdout, cp.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start nsbox in its own process group (so a test can signal the group like Ctrl-C does)."""
        return subprocess.Popen(self.argv(args), cwd=self.cwd, env=self.env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)


# Drop this mount namespace's copies of whatever the host has mounted under /run
# (other labs' pins, their /run/netns) so they do not show in its mountinfo, then
# mount an empty tmpfs. The namespace is private: nothing here reaches the host.
_PRIVATE_RUN = """
findmnt -rn -o TARGET | awk '$1 == "/run" || index($1, "/run/") == 1' | sort -r |
    while read -r m; do umount -l "$m" || exit 99; done
mount -t tmpfs -o mode=0755 nsbox-test /run || exit 99
"""


def in_private_run(script: str, out: Path, env: dict[str, str] | None = None,
                   timeout: float = 180) -> subprocess.CompletedProcess:
    """Run bash SCRIPT in a mount namespace of its own whose /run is a fresh, empty
    tmpfs: no /run/netns, no /run/nsbox, nothing of the other labs running on this
    host. The namespaces it makes are real ones of the real kernel, pinned only
    in that mount namespace, so the kernel frees them all when the script ends,
    even if the test fails. $NSBOX runs this checkout's nsbox, $OUT (= OUT, a
    directory outside /run) is where the script leaves what a test asserts on."""
    env = {**Nsbox().env(env), "NSBOX": f"{sys.executable} -m nsbox", "OUT": str(out)}
    argv = ["unshare", "--mount", "--propagation", "private", "bash", "-uc",
            _PRIVATE_RUN + script]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def shipped_recipe_import(alias: str, recipe_file: str) -> str:
    """The lines a test's own recipe file starts with to build on a shipped recipe (a
    mutant): import recipes/RECIPE_FILE by path as ALIAS, and nsbox's @recipe."""
    return (f"import importlib.util\n\nfrom nsbox.recipe import recipe\n\n"
            f"spec = importlib.util.spec_from_file_location({alias!r}, {str(REPO / 'recipes' / recipe_file)!r})\n"
            f"{alias} = importlib.util.module_from_spec(spec)\nspec.loader.exec_module({alias})\n\n\n")
