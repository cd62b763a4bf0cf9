"""The suite's hooks and fixtures; the harness they use lives in tests/support/.

- `pytest_configure`: registers the markers (`kernel`, `tools(...)`), starts the suite's
  children with the ending signals at their defaults, and refuses to test an nsbox that is
  not this checkout's.
- `tools(*names)` marker: skips a test unless these programs are on PATH.
- `host_unchanged` (autouse): every kernel test (a `test_kernel_*` file) run as root is
  watched by an independent observer of the REAL host (support.host): the host must look
  the same after the test as before it, and no process it started may still run. Other
  users' live labs are not judged (support.foreign). Unit tests are not affected.
- `nsbox`, `observers`, `kernel`: this checkout's nsbox as a command (support.runner), the
  observer scripts' folder, and the kernel tests' toolbox (support.kernel.Kernel).
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from tests.support.host import HostGuard, failure_text
from tests.support.kernel import IS_ROOT, Kernel
from tests.support.paths import OBSERVERS, REPO
from tests.support.runner import Nsbox


# --------------------------------------------------------------------------- hooks

def _default_ending_signals() -> None:
    """The suite's children start with SIGHUP, SIGINT and SIGTERM at their defaults, however
    the suite itself was started: `nohup`, or a background job of a non-interactive shell,
    ignores SIGHUP / SIGINT, and exec keeps an ignored signal ignored, so every signal test
    would test the launcher instead of nsbox. A test that wants an inherited SIG_IGN (the
    nohup test) sets it in its own child."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    _default_ending_signals()
    config.addinivalue_line("markers", "kernel: builds real namespaces; needs root")
    config.addinivalue_line("markers", "tools(*names): skip the test unless these programs are on PATH")
    _check_nsbox_is_this_checkout()


def _check_nsbox_is_this_checkout() -> None:
    """The suite tests this checkout's code, never an installed copy (install.sh installs a
    copy, not an editable link): `python -m pytest` from the checkout imports its nsbox first,
    a bare `pytest` script may not (its plugin entry point imports nsbox before any conftest)."""
    import nsbox
    where = Path(nsbox.__file__).resolve().parent
    if where != REPO / "nsbox":
        pytest.exit(f"the tests imported nsbox from {where}, not from this checkout ({REPO}): run "
                    f"`python -m pytest` from {REPO} (or set PYTHONPATH={REPO})", returncode=2)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("tools"):
        missing = [t for t in mark.args if shutil.which(t) is None]
        if missing:
            pytest.skip(f"needs {', '.join(missing)} on PATH (apt install iproute2 iptables conntrack "
                        f"iputils-ping curl util-linux)")


def _is_kernel_test(request: pytest.FixtureRequest) -> bool:
    return Path(str(request.node.fspath)).name.startswith("test_kernel_")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def host_unchanged(request: pytest.FixtureRequest):
    """Autouse for test_kernel_* tests run as root: the real host must look the same after
    the test as before it (netns, links, addresses, routes, iptables, mounts, conntrack,
    /run/nsbox), and no process the test started may still run."""
    if not (IS_ROOT and _is_kernel_test(request)):
        yield None
        return
    guard = HostGuard.now()
    yield guard
    found = guard.problems(within=5.0)
    if found:
        guard.clean_up()
        pytest.fail(failure_text("the test left the real host changed", found), pytrace=False)


@pytest.fixture(scope="session")
def nsbox() -> Nsbox:
    return Nsbox()


@pytest.fixture(scope="session")
def observers() -> Path:
    return OBSERVERS


@pytest.fixture(scope="session")
def kernel() -> type[Kernel]:
    return Kernel
