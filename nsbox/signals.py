"""Ctrl-C, SIGTERM and SIGHUP end a run with 128+signum, from nsbox's first instruction on.

`nsbox.entry` installs these handlers before it imports anything else, so a
signal at any moment unwinds (tearing down whatever was built) instead of being
lost, printing a traceback or being turned into click's "Aborted!" (exit 1 is
reserved for failed checks).

`Terminated` derives from BaseException, not KeyboardInterrupt: click and
library code that catch KeyboardInterrupt or Exception must not swallow it.
"""

from __future__ import annotations

import os
import signal
import sys

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A signal ended the run; unwinds (and tears down). Exit 128+signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_owner_pid: int | None = None


def _ignore_repeat(signum: int, _frame) -> None:
    """A second signal during teardown. A handler, not SIG_IGN, on purpose: the
    sandbox supervisor reads SigCgt to know that this process is in charge."""


_deferred: int | None = None


def _unraisable(info) -> None:
    """Terminated raised inside a finalizer or a weakref callback (an event loop
    collected by the GC, importlib's module-lock callback) would be printed as
    'Exception ignored' and lost: raise it again a moment later instead."""
    global _deferred
    if isinstance(info.exc_value, Terminated) and os.getpid() == _owner_pid:
        _deferred = info.exc_value.signum
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    sys.__unraisablehook__(info)


def _on_alarm(_signum: int, _frame) -> None:
    global _deferred
    if _deferred is not None:
        signum, _deferred = _deferred, None
        raise Terminated(signum)


def _on_signal(signum: int, _frame) -> None:
    if os.getpid() != _owner_pid:
        # A forked child (a library helper) inherited this handler: it must not
        # unwind a copy of nsbox and tear the lab down under the real one.
        os._exit(128 + signum)
    # The first signal starts an orderly teardown; repeats (a group kill plus
    # the supervisor's forward, an impatient second Ctrl-C) must not cut it short.
    for sig in ENDING:
        signal.signal(sig, _ignore_repeat)
    raise Terminated(signum)


def end_cleanly_on_signals() -> None:
    """From now on, Ctrl-C, SIGTERM and SIGHUP raise Terminated in this process only.

    Needed everywhere: on the host SIGTERM's default would skip teardown, and as
    pid 1 of the sandbox's pid namespace the kernel drops signals it has no handler for."""
    global _owner_pid
    _owner_pid = os.getpid()
    sys.unraisablehook = _unraisable
    for sig in ENDING:
        signal.signal(sig, _on_signal)


class deferred:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends (teardown, or a step
    that must not be cut in half). Pending signals are delivered afterwards.
    A plain class: this module is imported before anything else, so it imports
    nothing slow (contextlib and typing would widen the window before the handlers)."""

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, set(ENDING))

    def __exit__(self, *_exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
