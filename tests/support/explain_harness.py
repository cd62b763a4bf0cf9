"""Validation that follows the kernel: a lab's own `nsbox explain` script run by bash in a
throwaway user+net+mount namespace, so the kernel itself says what it accepts and refuses.

For a refusal nsbox's validation must refuse the lab in one line, AND in the explained
script everything but the refused command must work (set -e) while that one fails, with the
kernel's own message. For an acceptance validation accepts and the whole script builds
(tests/kernel/test_kernel_routing.py, tests/kernel/test_kernel_cni_model.py).

`run_script_and_verify` goes one step further: the script builds the lab in the sandbox and
nsbox's verifier (observers/verify_explained.py) checks the recipe's own expectations
against what the script built; nsbox builds nothing there (test_kernel_explain.py and the
link-kind, link-option, IPv6 and routing tests).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable

import pytest

from nsbox.errors import ValidationError
from nsbox.model import Lab
from nsbox.plan.explain import script
from nsbox.validate import validate
from tests.support.paths import OBSERVERS, REPO


VERIFY = OBSERVERS / "verify_explained.py"
VENV_PYTHON = "/opt/nsbox/venv/bin/python"  # world-readable, as the sandbox's mapped root needs
_SANDBOX = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child",
            "--mount-proc", "sh", "-c"]


def sandbox(text: str, tmp_path: Path, then: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    """Run bash TEXT in a fresh user+net+mount+pid namespace with a private /run (and the
    shell command THEN after it, when TEXT succeeded)."""
    (tmp_path / "lab.sh").write_text(text)
    inner = f"mount -t tmpfs tmpfs /run && bash {tmp_path / 'lab.sh'}" + (f" && {then}" if then else "")
    return subprocess.run([*_SANDBOX, inner], capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def run_script_and_verify(script: str, recipe: str, tmp_path: Path, sets: tuple[str, ...] = (),
                          recipes_dir: str = "") -> subprocess.CompletedProcess:
    """SCRIPT (a recipe's explained script) builds the lab in the sandbox; then nsbox's
    verifier checks RECIPE's expectations (with SETS) against it, one PASS/FAIL line each."""
    return sandbox(script, tmp_path, timeout=300, then=(
        f"NSBOX_TEST_RECIPES={recipes_dir} PYTHONPATH={REPO} {VENV_PYTHON} {VERIFY} {recipe} {' '.join(sets)}"))


def shipped_recipes() -> list[str]:
    """The names of the recipes shipped in recipes/."""
    from nsbox import recipe

    cat = recipe.catalogue(())
    return sorted(r.name for r in cat.recipes.values() if Path(r.path).resolve().parent == REPO / "recipes")


def base_lab() -> Lab:
    """host: bridge br0 10.0.0.1/24 with port p0; node a: eth0 10.0.0.2/24 on it."""
    lab = Lab("t")
    lab.host.bridge("br0", "10.0.0.1/24")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "p0", b_master="br0")
    a.address("eth0", "10.0.0.2/24")
    return lab


def refused_line(lab: Lab, node: str) -> str:
    """The explained script's line for the object added last to NODE: the second of two
    identical steps (a duplicate), else the last step the base lab does not have."""
    from nsbox.plan.explain import _shell
    from nsbox.plan.steps import plan_lab

    steps = [s for s in plan_lab(lab).steps if s.node == node]
    texts = [s.text for s in steps]
    dups = [s for s in steps if texts.count(s.text) > 1]
    base = {s.text for s in plan_lab(base_lab()).steps if s.node == node}
    step = dups[-1] if dups else [s for s in steps if s.text not in base][-1]
    [line] = _shell(step)
    return line


def assert_refused_as_the_kernel_refuses(lab: Lab, node: str, words: Iterable[str], kernel_says: str,
                                         tmp_path: Path) -> None:
    """LAB (base_lab() plus one object on NODE) is refused by validation in one line naming
    WORDS, and by the kernel running the explained script, with KERNEL_SAYS on stderr."""
    with pytest.raises(ValidationError) as e:
        validate(lab)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg

    line = refused_line(lab, node)
    text = script(lab)
    at = text.rindex(line + "\n")
    # Everything but the refused command must work (set -e), and that one must fail.
    probe = f"if {line}; then echo ACCEPTED; else echo REFUSED; fi\n"
    done = sandbox(text[:at] + probe + text[at + len(line) + 1:], tmp_path)
    assert done.returncode == 0, f"{text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "REFUSED" in done.stdout.split(), f"the kernel accepted: {line}\n{done.stderr}"
    assert kernel_says in done.stderr, done.stderr


def assert_accepted_as_the_kernel_accepts(lab: Lab, tmp_path: Path) -> None:
    """LAB passes validation and its explained script builds in the kernel."""
    validate(lab)
    text = script(lab)
    done = sandbox(text, tmp_path)
    assert done.returncode == 0, f"{text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
