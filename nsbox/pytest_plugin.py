"""pytest plugin (entry point `nsbox`): build a lab in a test, send traffic, tear it down.

    def test_containers_talk(nsbox_lab):
        lab = nsbox_lab("bridge-mode", containers=3)
        lab.assert_reachable("c1", "c3")                      # ICMP
        lab.assert_reachable("c1", "internet", "http", 80)
        lab.assert_reachable("internet", "c2", "tcp", 80, allow=False)
        assert "172.17.0.4" in lab.exec("c3", ["ip", "-br", "addr"]).stdout

`nsbox_lab(build_fn)` takes an inline lab instead: a function `build_fn(lab)` that
fills an nsbox.model.Lab (or a function decorated with @recipe).

Why on the real host, and only as root: a pytest process may already run threads,
and unshare(CLONE_NEWUSER) refuses a multi-threaded process, so it cannot enter a
sandbox of its own. The lab is built as `nsbox run --on-host` builds it (named
namespaces with a per-lab prefix, a journal in /run/nsbox, nothing in the host's
own namespace) and torn down after the test, pass or fail. Without root, or when
the kernel lacks a feature the lab requires, the test is SKIPPED with the reason;
a broken nsbox installation fails it.

SIGTERM and SIGHUP (a CI job's timeout, a closed terminal) would kill pytest on
the spot and leave the labs to `nsbox clean`. While the fixture is in use they
interrupt the test as Ctrl-C does (KeyboardInterrupt: pytest stops and runs
fixture teardown, which removes every lab); a handler the test suite installed
itself, or an inherited SIG_IGN, is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import pytest

from nsbox.errors import InstallError, NsboxError
from nsbox.model import Lab

NOT_ROOT = ("nsbox_lab needs root: a pytest process cannot enter a user namespace of its own "
            "(it may already run threads), so labs are built in the host's named namespaces")


def _root() -> bool:
    return os.geteuid() == 0


@dataclass
class LabHandle:
    """A live lab: its nodes are named namespaces; probes and commands run inside them."""

    lab: Lab
    built: Any    # nsbox.kernel.realize.Realized
    servers: Any  # nsbox.verify.servers.ServerSet
    timeout: float = 1.0
    session: Any = field(default=None, repr=False)  # nsbox.session.LabSession: the one path a lab takes

    @property
    def name(self) -> str:
        return self.lab.name

    def netns(self, node: str) -> str:
        """The named netns of NODE (what `ip netns exec NAME ...` takes)."""
        return self.built.netns_names()[self._node(node)]

    def exec(self, node: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """Run ARGV inside NODE's network namespace (util-linux nsenter); output captured as text."""
        from nsbox import tools
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        nsenter = tools.need("nsenter", "util-linux")
        return subprocess.run([nsenter, f"--net={self.built.path(self._node(node))}", *argv], check=False, **kw)

    def probe(self, src: str, dst: str, proto: str = "icmp", port: int | None = None,
              timeout: float | None = None, query: str | None = None) -> bool:
        """One probe, as the verifier sends it: whether SRC (a node or container) reached DST
        (a node, container, lab address or declared virtual one). QUERY: the name a dns probe asks."""
        return self._probe(src, dst, proto, port, timeout, query).reachable

    def assert_reachable(self, src: str, dst: str, proto: str = "icmp", port: int | None = None, *,
                         allow: bool = True, timeout: float | None = None, deadline: float = 4.0,
                         query: str | None = None) -> None:
        """Assert SRC can (allow=True) or cannot reach DST. A result that differs from the one
        expected is probed again for up to DEADLINE seconds (the lab may still be settling)."""
        __tracebackhide__ = True  # the failure is the test's line, not this helper's
        from nsbox import retry

        tried = retry.until(lambda: self._probe(src, dst, proto, port, timeout, query), lambda p: p.reachable == allow,
                            within=deadline, every=0.2)
        p, attempts = tried.value, tried.attempts
        if p.reachable != allow:
            from nsbox.session import probe_target
            ip = probe_target(self.lab, src, dst, proto, port, query=query).ip
            where = f"{ip}:{port}" if port else ip
            raise AssertionError(f"{self.name}: {proto} {src}->{dst} ({where}): expected "
                                 f"{'allow' if allow else 'deny'}, observed {'allow' if p.reachable else 'deny'}"
                                 f" ({p.detail}) after {attempts} probe(s)")

    def down(self) -> list[str]:
        """Stop the servers and remove every namespace the lab made. Returns problems."""
        return self.session.teardown() if self.session is not None else []

    def _probe(self, src: str, dst: str, proto: str, port: int | None, timeout: float | None,
               query: str | None = None):
        from nsbox.errors import ValidationError
        from nsbox.session import probe_target
        from nsbox.verify.probes import probe
        try:  # the same rule as a recipe's checks: only probes and targets the lab accepts
            target = probe_target(self.lab, src, dst, proto, port, query=query)
        except ValidationError as e:
            raise ValueError(f"{self.name}: {proto} probe {src}->{dst}: {e}") from None
        return probe(proto, self.built.path(self.lab.netns_of(src).name), target.ip, port,
                     timeout or self.timeout, query)

    def _node(self, node: str) -> str:
        if node not in self.lab.nodes:
            raise ValueError(f"lab {self.name} has no node {node!r} (nodes: {', '.join(self.lab.nodes)})")
        return node


def build_lab(what: str | Callable[..., None], params: dict[str, Any],
              recipe_dirs: Sequence[str] = ()) -> Lab:
    """The Lab model of a recipe name or an inline build function, built in the recipe jail
    (a child with its own netns and no capabilities) and validated here."""
    from nsbox.model.serialize import lab_from_dict, lab_to_dict
    from nsbox.sandbox import jail
    from nsbox.session import load_and_validate

    def build() -> dict:
        from nsbox import recipe
        r = recipe.get(what, tuple(recipe_dirs)) if isinstance(what, str) else getattr(what, "__nsbox_recipe__", None)
        if r is not None:  # a recipe: parameters are checked as `--set KEY=VALUE` would be
            lab = r.build({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()})
        else:  # an inline function takes its keyword arguments as they are
            doc = (what.__doc__ or "").strip().splitlines()
            lab = Lab(getattr(what, "__name__", "inline").replace("_", "-"), doc[0] if doc else "")
            what(lab, **params)
        return lab_to_dict(load_and_validate(lambda: lab))

    return load_and_validate(lambda: lab_from_dict(jail.run(build)))  # as `nsbox run` loads


def up(lab: Lab, timeout: float = 1.0) -> LabHandle:
    """Build LAB in the host's named namespaces and start its servers, through the one
    LabSession every front end uses. Skips (pytest.skip) when the kernel lacks a feature
    LAB requires."""
    from nsbox.session import LabSession

    session = LabSession(lab, on_host=True, tidy=True)
    lacking = session.lacking()  # InstallError propagates: not a skip
    if lacking:
        pytest.skip(f"{lab.name}: " + "; ".join(lacking.values()))
    session.up()
    return LabHandle(lab, session.built, session.servers, timeout, session)


class LabInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while nsbox_lab was in use: pytest stops as on Ctrl-C,
    and the fixture's teardown removes the labs."""


_INTERRUPTING = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame) -> None:
    for sig in _INTERRUPTING:  # repeats must not cut teardown short
        if signal.getsignal(sig) is _interrupt:
            signal.signal(sig, _ignore)
    raise LabInterrupted(f"signal {signum}: the test was stopped; nsbox_lab removes its labs")


def _ignore(_signum: int, _frame) -> None:
    """A repeated signal while the labs are torn down."""


def _interrupt_on_signals() -> Callable[[], None]:
    """SIGTERM and SIGHUP raise LabInterrupted, where their disposition is the default
    one (the main thread only can set handlers). Returns what puts the old ones back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {}
    for sig in _INTERRUPTING:
        if signal.getsignal(sig) == signal.SIG_DFL:
            old[sig] = signal.signal(sig, _interrupt)

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


@pytest.fixture
def nsbox_lab(request: pytest.FixtureRequest) -> Iterator[Callable[..., LabHandle]]:
    """A factory: `nsbox_lab("bridge-mode", containers=3)` or `nsbox_lab(build_fn)` -> a live
    LabHandle with .exec, .probe and .assert_reachable; every lab is torn down after the test.

    Keyword arguments are the recipe's parameters, except `recipe_dirs` (more recipe folders)
    and `timeout` (seconds one probe waits, default 1)."""
    handles: list[LabHandle] = []

    def factory(what: str | Callable[..., None], *, recipe_dirs: Sequence[str] = (), timeout: float = 1.0,
                **params: Any) -> LabHandle:
        if not _root():
            pytest.skip(NOT_ROOT)
        try:
            lab = build_lab(what, params, recipe_dirs)
            handle = up(lab, timeout)
        except InstallError as e:
            pytest.fail(f"nsbox is not installed properly: {e}", pytrace=False)
        except NsboxError as e:
            pytest.fail(f"nsbox: {e}", pytrace=False)
        handles.append(handle)
        return handle

    restore = _interrupt_on_signals()
    try:
        yield factory
    finally:
        from nsbox.signals import deferred as signals_deferred

        # Every lab goes, and the handlers are back, before a pending signal is let in:
        # a second SIGTERM then ends pytest by its default action, with nothing left.
        with signals_deferred():
            problems = [p for h in reversed(handles) for p in h.down()]
            restore()
    if problems:
        pytest.fail("nsbox_lab teardown: " + "; ".join(problems), pytrace=False)
