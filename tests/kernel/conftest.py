"""Fixtures only the kernel tests use."""

from __future__ import annotations

import pytest

from tests.support import vm_run
from tests.support.host import HostGuard, failure_text


@pytest.fixture(scope="session")
def shared_vm_run(tmp_path_factory) -> vm_run.SharedRun:
    """One `nsbox run --kernel host --kernel DEBIAN` (tests/support/vm_run.py) for every test
    that judges a part of its report: one TCG boot instead of one per test. Skips where
    QEMU, virtme-ng or a kernel under /boot are missing. A session fixture runs before the
    autouse host guard of the first test that asks for it, so it is watched by a guard of its
    own: what the run left on the host fails every test that uses it."""
    from tests.kernel.test_kernel_protocols import RECIPE

    kernel = vm_run.vm_kernel()
    recipes = vm_run.recipe_dir(tmp_path_factory.mktemp("vm-shared"), RECIPE)
    guard = HostGuard.now()
    shared = vm_run.run(kernel, recipes)
    found = guard.problems(within=5.0)
    if found:
        guard.clean_up()
        shared.host_left = failure_text("the shared VM run left the real host changed", found)
    return shared
