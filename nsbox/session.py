"""One lab session: the one path every front end takes from a Lab to its results.

    with LabSession(lab, on_host=True) as s:     # teardown is guaranteed on leaving
        if s.lacking(): ...                       # kernel features the lab needs and lacks
        s.up()                                    # build (realize) + start the servers
        results = s.verify(timing)                # the very verify() of `nsbox run`

`nsbox run` (runner.py), the pytest plugin (`nsbox_lab`), the live holder
(`nsbox up`) and the external verifier (the real dockerd's namespaces,
verify/external.py) all go through it; `nsbox doctor` loads and validates
recipes with `load_and_validate`, as `nsbox run` does. Which probes a lab
accepts — the protocols and the targets — is decided in one place,
`probe_target`, that validation, the plugin's ad-hoc probes and the external
verifier all ask: they cannot disagree.

The trust machinery stays where it is: the sandbox and its result pipe
(nsbox/sandbox/), the on-host journal (host/onhost.py, host/journal.py) and
signal deferral during teardown (nsbox/signals.py). A session only calls them
in the one order that is right.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable

from nsbox.errors import KernelError
from nsbox.signals import deferred
from nsbox.validate import probe_target  # noqa: F401 - the one rule of which probes a lab accepts, for the front ends

if TYPE_CHECKING:
    from nsbox.model import Lab
    from nsbox.verify.results import CheckResult, RecipeResult
    from nsbox.verify.servers import ServerSet
    from nsbox.verify.verifier import Built, Timing

def on_host_names(lab_name: str) -> tuple[str, str]:
    """(netns prefix, journal path) for a lab built in the real host's namespaces."""
    from nsbox.host import netns
    from nsbox.host.onhost import JOURNAL_DIR

    prefix = netns.new_prefix()
    return prefix, f"{JOURNAL_DIR}/{prefix}{lab_name}.journal"


def remove_empty(path: str) -> None:
    """rmdir PATH if empty. /run/nsbox only under its lock (onhost.locked): a lab
    starting may hold it, about to write its journal there."""
    from nsbox.host import onhost

    if path == onhost.JOURNAL_DIR:
        onhost.remove_dir_if_empty()
        return
    try:
        os.rmdir(path)
    except OSError:
        pass


def load_and_validate(build: Callable[[], Lab]) -> Lab:
    """The load step: BUILD() makes the Lab (a recipe's build, in the recipe jail or the
    sandbox), which is validated as `nsbox run` validates it."""
    from nsbox.validate import validate

    lab = build()
    validate(lab)
    return lab


class LabSession:
    """One lab's life: lacking → build → serve → verify → artifacts → teardown.

    ON_HOST: built in the real host's named namespaces, with a per-run prefix and a
    journal in /run/nsbox (else: the sandbox's own namespaces, real names). TIDY: remove
    /run/nsbox when it is left empty (the pytest plugin, which has no sandbox to end).
    As a context manager, leaving the block tears the lab down, whatever happened."""

    def __init__(self, lab: Lab, *, on_host: bool, iptables: str = "auto",
                 progress: Callable[[str], None] | None = None, tidy: bool = False) -> None:
        self.lab = lab
        self.on_host = on_host
        self.iptables = iptables
        self.progress = progress
        self.tidy = tidy
        self.built: Any = None  # kernel.realize.Realized, or an ExternalLab (external())
        self.servers: ServerSet | None = None
        self._owns_kernel_state = True
        self._down = False

    @classmethod
    def external(cls, built: Built) -> LabSession:
        """A session over namespaces someone else built (verify/external.py's ExternalLab):
        verify and the servers as in a normal run; teardown stops only the servers."""
        s = cls(built.lab, on_host=True, iptables=built.iptables)
        s.built = built
        s._owns_kernel_state = False
        return s

    # -- the steps --
    def lacking(self) -> dict[str, str]:
        """Kernel features the lab requires that this kernel lacks: {feature: why}. A lab
        with any is skipped, never built."""
        from nsbox.host import features

        return features.missing(frozenset(self.lab.requires), self.iptables)

    def build(self, realizer: Callable[[Any, str, str | None], Any] | None = None) -> Any:
        """Realize the lab. On a KernelError realize has already undone what it built.
        REALIZER(lab, prefix, journal): another way to build it (a live lab's part:
        nsbox/live/parts.py), with the same names, journal and teardown."""
        from nsbox.host.onhost import JOURNAL_DIR
        from nsbox.kernel.realize import realize

        assert self.built is None, "a session builds its lab once"
        prefix, journal = on_host_names(self.lab.name) if self.on_host else ("", None)
        try:
            if realizer is not None:
                self.built = realizer(self.lab, prefix, journal)
            else:
                self.built = realize(self.lab, prefix, journal, self.iptables, progress=self.progress)
        finally:
            if self.tidy:
                remove_empty(JOURNAL_DIR)  # a failed build may leave the journal dir empty
        return self.built

    def serve(self) -> ServerSet:
        """Start the lab's servers (listeners the probes reach) in its namespaces."""
        from nsbox.verify.verifier import start_servers

        self.servers = start_servers(self.built)
        return self.servers

    def up(self) -> LabSession:
        """build() and serve(); if the servers do not start, the lab is torn down again."""
        self.build()
        try:
            self.serve()
        except BaseException:
            self.teardown()
            raise
        return self

    def verify(self, timing: Timing) -> list[CheckResult]:
        """The lab's checks against the live lab (verify/verifier.py)."""
        from nsbox.verify.verifier import verify

        assert self.servers is not None, "verify() needs serve() first"
        return verify(self.built, self.servers, timing)

    def artifacts(self, result: RecipeResult, directory: str, timing: Timing, node_state: bool = False) -> None:
        """Keep what explains the failures, while the lab is still live; a problem here is
        a warning, never a second failure."""
        from nsbox.artifacts.collect import collect

        try:
            result.artifacts_dir = collect(self.built, result, directory, timing, node_state)
        except (OSError, KernelError) as e:
            print(f"nsbox: warning: artifacts of {self.lab.name} not written: {e}", file=sys.stderr)

    def teardown(self) -> list[str]:
        """Stop the servers and remove everything the build made (once; signals deferred
        so that a Ctrl-C cannot cut it short). Returns the problems, if any."""
        if self._down:
            return []
        self._down = True
        problems: list[str] = []
        with deferred():
            try:
                if self.servers is not None:
                    self.servers.close()
            finally:
                if self.built is not None and self._owns_kernel_state:
                    problems = self.built.teardown()
                if self.tidy:
                    from nsbox.host.onhost import JOURNAL_DIR

                    remove_empty(JOURNAL_DIR)
        return problems

    def __enter__(self) -> LabSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()
