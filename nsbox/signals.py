"""Ctrl-C, SIGTERM and SIGHUP end a run with 128+signum, from nsbox's first instruction on.

`nsbox.entry` installs these handlers before it imports anything else, so a
signal at any moment unwinds (tearing down whatever was built) instead of being
lost, printing a traceback or being turned into click's "Aborted!" (exit 1 is
reserved for failed checks).

`Terminated` derives from BaseException, not KeyboardInterrupt: click and
library code that catch KeyboardInterrupt or Exception must not swallow it.
"""

import os
import sys
import time

try:
    # The C module that `signal` wraps (already loaded by the interpreter): the same
    # functions and numbers, without `signal`'s enums, whose import (enum, functools,
    # collections) was a quarter of `nsbox --help`'s time. Handlers get plain ints either way.
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without it
    import signal  # type: ignore[no-redef]

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
_taken: int | None = None  # the signal that ended this run, once one has

# After the first signal, teardown has this long before the process ends without it
# (stderr says so; `nsbox clean` removes what an --on-host lab left). The sandbox's
# supervisor gives 15 s (nsbox/sandbox/enter.py TEARDOWN_GRACE): this is longer.
TEARDOWN_LIMIT = 30.0
_TICK = 0.01  # seconds between checks while a signal waits for an asyncio loop to return

_pending: int | None = None        # a signal held back while an asyncio loop runs (see _on_signal)
_pending_since = 0.0
_deferred: int | None = None       # Terminated lost in a finalizer, raised again (see _unraisable)
_watchdog_at: float | None = None  # monotonic time at which the watchdog ends the process
PENDING_LIMIT = 5.0  # a loop that runs longer than this gets the exception raised inside it after all


def _ignore_repeat(signum: int, _frame) -> None:
    """A second signal during teardown. A handler, not SIG_IGN, on purpose: the
    sandbox supervisor reads SigCgt to know that this process is in charge."""


def _unraisable(info) -> None:
    """Terminated raised inside a finalizer or a weakref callback (an event loop
    collected by the GC, importlib's module-lock callback) would be printed as
    'Exception ignored' and lost: raise it again a moment later instead. Once a
    signal is ending the run, other finalizers' complaints (objects half made
    when the signal came) are noise on the way out: not printed."""
    global _deferred
    if os.getpid() == _owner_pid:
        if isinstance(info.exc_value, Terminated):
            _deferred = info.exc_value.signum
            _arm(0.02)
            return
        if _taken is not None:
            return
    sys.__unraisablehook__(info)


_HELD_IN = ("/asyncio/", "/pyroute2/")  # code where an exception raised by a handler is swallowed


def _in_asyncio_loop(frame=None) -> bool:
    """Whether this thread is inside asyncio or pyroute2's code (pyroute2's IPRoute runs an
    event loop per request). An exception raised there lands in a callback, where
    asyncio catches and logs it, and the request it belonged to waits forever; raised
    between two rounds of pyroute2's loop it leaves a half-run generator behind."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return False
    try:
        if aio.events._get_running_loop() is not None:
            return True
    except Exception:  # noqa: BLE001 - a private function: if it changed, look at the frames only
        pass
    depth = 0
    while frame is not None and depth < 200:
        name = frame.f_code.co_filename
        if any(part in name for part in _HELD_IN):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def _raise_on_return(frame) -> None:
    """Trace the frame that called into asyncio or pyroute2 (the caller of the
    outermost such frame, nsbox's own code): its next event, once control is back
    there, raises the pending Terminated. Tracing is on only until then; a tracer already set (a
    debugger, coverage) is put back."""
    target, f = None, frame
    while f is not None:  # the caller of the outermost asyncio/pyroute2 frame
        if any(part in f.f_code.co_filename for part in _HELD_IN):
            target = f.f_back
        f = f.f_back
    if target is None:
        return
    previous = sys.gettrace()

    def local(f, _event, _arg):
        global _pending
        f.f_trace = None
        sys.settrace(previous)
        if _pending is None:  # raised already (by _on_alarm)
            return None
        signum, _pending = _pending, None
        _rearm(time.monotonic())
        raise Terminated(signum)

    def global_trace(_f, _event, _arg):
        return previous(_f, _event, _arg) if previous is not None else None

    target.f_trace = local
    target.f_trace_lines = True
    sys.settrace(global_trace)  # tracing must be on in this thread for f_trace to be called


def _arm(seconds: float) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _on_alarm(_signum: int, frame) -> None:
    global _deferred, _pending
    now = time.monotonic()
    if _watchdog_at is not None and now >= _watchdog_at and os.getpid() == _owner_pid:
        # Teardown itself hangs (a blocked kernel call, a library that swallowed the
        # signal): end the process rather than the machine's user waiting forever.
        os.write(2, (f"nsbox: teardown did not end within {TEARDOWN_LIMIT:g} s of signal {_taken}; "
                     f"exiting (run `nsbox clean` if an --on-host lab was left)\n").encode())
        os._exit(128 + (_taken or 0))
    if _deferred is not None:
        signum, _deferred = _deferred, None
        _rearm(now)
        raise Terminated(signum)
    if _pending is not None:
        if not _in_asyncio_loop(frame) or now - _pending_since > PENDING_LIMIT:
            signum, _pending = _pending, None  # the tracer (_raise_on_return) then does nothing
            _rearm(now)
            raise Terminated(signum)
        signal.setitimer(signal.ITIMER_REAL, _TICK)
        return
    _rearm(now)


def _rearm(now: float) -> None:
    """Keep the watchdog's alarm set (if it is running)."""
    if _watchdog_at is not None:
        signal.setitimer(signal.ITIMER_REAL, max(_watchdog_at - now, 0.001))


def _on_signal(signum: int, frame) -> None:
    global _taken, _pending, _pending_since, _watchdog_at
    if os.getpid() != _owner_pid:
        # A forked child (a library helper) inherited this handler: it must not
        # unwind a copy of nsbox and tear the lab down under the real one.
        os._exit(128 + signum)
    # The first signal starts an orderly teardown; repeats (a group kill plus
    # the supervisor's forward, an impatient second Ctrl-C) must not cut it short.
    for sig in ENDING:
        if signal.getsignal(sig) is _on_signal:
            signal.signal(sig, _ignore_repeat)
    _taken = signum
    _watchdog_at = time.monotonic() + TEARDOWN_LIMIT
    if _in_asyncio_loop(frame):
        # Not here: asyncio would catch it and the run would hang (issue 12, item 11).
        # Raised in nsbox's own frame that called into asyncio/pyroute2, the moment
        # that call returns (or raises); _on_alarm checks too, in case it does not.
        _pending, _pending_since = signum, time.monotonic()
        _raise_on_return(frame)
        _arm(_TICK)
        return
    _arm(TEARDOWN_LIMIT)
    raise Terminated(signum)


def end_cleanly_on_signals() -> None:
    """From now on, Ctrl-C, SIGTERM and SIGHUP raise Terminated in this process only.

    Needed everywhere: on the host SIGTERM's default would skip teardown, and as
    pid 1 of the sandbox's pid namespace the kernel drops signals it has no handler for.
    A SIGHUP this process was started ignoring (`nohup nsbox run ...`) stays ignored."""
    global _owner_pid
    _owner_pid = os.getpid()
    sys.unraisablehook = _unraisable
    if not _atexit_registered():
        import atexit

        # At exit Python resets handlers to their defaults: an alarm still set would kill
        # the process with SIGALRM (exit 142) instead of letting it end with 128+N.
        atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)
    for sig in ENDING:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, _on_signal)


def let_in() -> None:
    """Unblock the ending signals (call where a Terminated is caught: entry.main).

    A launcher may start Python with them blocked, so that none can come while the
    interpreter starts (a Ctrl-C during `import site` is Python's own "Fatal Python
    error", exit 1): one that came meanwhile is delivered now, to nsbox's handler."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ENDING)


_registered: list[bool] = []


def _atexit_registered() -> bool:
    if _registered:
        return True
    _registered.append(True)
    return False


def ended_by() -> int | None:
    """The signal that is ending this run, if one is."""
    return _taken


class deferred:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends (teardown, or a step
    that must not be cut in half). Pending signals are delivered afterwards.
    A plain class: this module is imported before anything else, so it imports
    nothing slow (contextlib and typing would widen the window before the handlers)."""

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, set(ENDING))

    def __exit__(self, *_exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
