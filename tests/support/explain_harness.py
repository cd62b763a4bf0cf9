"""Validation that follows the kernel: a lab's own `nsbox explain` script run by bash in a
throwaway user+net+mount namespace, so the kernel itself says what it accepts and refuses.

For a refusal nsbox's validation must refuse the lab in one line, AND in the explained
script everything but the refused command must work (set -e) while that one fails, with the
kernel's own message. For an acceptance validation accepts and the whole script builds.
Used by tests/kernel/test_kernel_routing.py and tests/kernel/test_kernel_cni_model.py.
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


def sandbox(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run bash TEXT in a fresh user+net+mount namespace with a private /run."""
    (tmp_path / "lab.sh").write_text(text)
    inner = f"mount -t tmpfs tmpfs /run && bash {tmp_path / 'lab.sh'}"
    return subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
                           "--kill-child", "--mount-proc", "sh", "-c", inner],
                          capture_output=True, text=True, timeout=120, start_new_session=True)


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
