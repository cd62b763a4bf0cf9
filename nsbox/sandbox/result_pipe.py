"""The sandboxed run's results travel to the supervisor, which reports.

Recipe code runs in the sandbox's nsbox (pid 1 there). Whatever it does to
that process -- os._exit(0) in build(), os.execv("/bin/true"), a thread that
ends the process half-way through the checks -- must not end the run as a
silent pass with an empty report. So the process that reports is not one
recipe code can reach: the sandboxed nsbox sends its results as one JSON
message down a pipe to the supervisor outside (nsbox/sandbox/enter.py), and
the supervisor renders the report (text, JSON, JUnit, KTAP), writes it and
decides the exit code. A sandboxed nsbox that ends without a complete message,
with any exit status (0 included), is reported as an error of the run:
"no result: the recipe process ended early (exit N)", exit 1.

Messages (JSON objects, one per line; the last one ends the run and closes the pipe):
  {"plan": ["NAME", ...]}                       the recipes about to run, in order (first, once)
  {"result": RecipeResult.to_json()}            one recipe's result, as soon as it is known:
                                                the supervisor prints it at once (text to a
                                                terminal or pipe) and keeps it, so a sandbox that
                                                ends early still has what finished reported, the
                                                rest as "no result" (or "interrupted" for a signal)
  {"results": [RecipeResult.to_json(), ...], "refused": false}
                                                the run's results; the supervisor reports them
                                                (refused: a recipe was bad input, exit 2)
  {"failed": N}                                 a one-line error already went to stderr; exit N
                                                (bad input: 2), no report, as before

This is about a run that ends early, not about a recipe that lies: recipe code
in the sandbox could write a message of its own. It is the caller's code, run
as the caller; it only must not turn a failure into a pass by accident or by
killing the process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # imported where used: the sandbox's nsbox claims the pipe before it imports much
    from nsbox.verify.results import RecipeResult

RESULT_FD_ENV = "NSBOX_RESULT_FD"
_MAX_MESSAGE = 256 << 20  # far beyond any report (1000 containers: a few MB)

_fd: int | None = None  # inside the sandbox: where results go


# --------------------------------------------------------------------------- inside the sandbox

def claim_from_environment(sandboxed: bool) -> None:
    """Take the pipe's fd number out of the environment, first thing (with
    enter.claim_from_environment); kept only by the supervisor's own child
    (SANDBOXED). Close-on-exec from now on: nothing this process starts
    (`--then`) inherits the pipe."""
    global _fd
    raw = os.environ.pop(RESULT_FD_ENV, None)
    if not sandboxed or raw is None or not raw.isdigit():
        return
    fd = int(raw)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return
    _fd = fd


def take(fd: int) -> None:
    """In the sandbox's pid 1 made by fork (enter.fork_into): results go to FD,
    which nothing this process starts inherits."""
    global _fd
    os.set_inheritable(fd, False)
    _fd = fd


def claimed() -> bool:
    return _fd is not None


def send_results(results: list[RecipeResult], refused: bool = False) -> None:
    """REFUSED: one of the recipes was refused as bad input (its error is among the
    results, the others ran): the run then exits 2, as on the host."""
    _send({"results": [r.to_json() for r in results], "refused": bool(refused)})


def send_plan(names: list[str]) -> None:
    """The recipes this run is about to run, in order (what "the rest" is if it ends early)."""
    _send_line({"plan": [str(n) for n in names]})


def send_one(result: RecipeResult) -> None:
    """RESULT as soon as its recipe is done; the pipe stays open for the next."""
    _send_line({"result": result.to_json()})


def _send_line(message: dict) -> None:
    if _fd is None:
        return
    data = memoryview((json.dumps(message) + "\n").encode())
    try:
        while data:
            data = data[os.write(_fd, data):]
    except OSError:
        pass  # the supervisor is gone; the final message will say nothing to no one either


def send_failure(exit_code: int) -> None:
    """The run ends with a one-line error on stderr and EXIT_CODE (no report)."""
    _send({"failed": int(exit_code)})


def _send(message: dict) -> None:
    global _fd
    if _fd is None:
        return
    fd, _fd = _fd, None
    data = memoryview((json.dumps(message) + "\n").encode())
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # the supervisor is gone: nobody is left to report to
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the supervisor

class Receiver:
    """The read end, drained by a thread while the supervisor waits for the sandbox
    (a big report does not fit in a pipe's buffer)."""

    def __init__(self, on_result: Callable[[RecipeResult], None] | None = None) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._chunks: list[bytes] = []
        self._thread: threading.Thread | None = None
        self._pending = b""
        self.plan: list[str] = []
        self.partial: list[dict] = []   # {"result": ...} payloads, in arrival order
        self._on_result = on_result

    def start(self) -> None:
        """After the sandbox was spawned: close our copy of the write end (EOF comes
        when the sandbox's last process is gone) and start draining."""
        os.close(self.write_fd)
        self._thread = threading.Thread(target=self._drain, name="nsbox-results", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        size = 0
        try:
            while size <= _MAX_MESSAGE:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    break
                self._chunks.append(chunk)
                size += len(chunk)
                self._lines(chunk)
        except OSError:
            pass
        finally:
            os.close(self.read_fd)

    def _lines(self, chunk: bytes) -> None:
        """Per-recipe messages as they come: kept, and shown (ON_RESULT) at once."""
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            msg = _parse(line)
            if msg is None:
                continue
            if isinstance(msg.get("plan"), list) and not self.plan:
                self.plan = [str(n) for n in msg["plan"]]
            elif isinstance(msg.get("result"), dict):
                self.partial.append(msg["result"])
                if self._on_result is not None:
                    try:
                        result = _recipe_result(msg["result"])
                    except (TypeError, ValueError, KeyError):
                        continue
                    try:
                        self._on_result(result)
                    except (OSError, ValueError):
                        self._on_result = None  # stdout closed: the final report will say so

    def message(self, timeout: float = 5.0) -> dict | None:
        """The sandbox's complete message, or None (none, half of one, or not ours)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        raw = b"".join(self._chunks)
        if raw.endswith(b"\n"):
            last = _parse(raw.rstrip(b"\n").rsplit(b"\n", 1)[-1])
            if last is not None and ("results" in last or "failed" in last):
                return last
        if self.partial or self.plan:
            # no final message: what finished, and what was to run (the supervisor reports the rest)
            return {"partial": list(self.partial), "plan": list(self.plan)}
        return None


def _parse(line: bytes) -> dict | None:
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return msg if isinstance(msg, dict) else None


def results_from_message(msg: dict) -> list[RecipeResult] | None:
    """The RecipeResults in a {"results": [...]} message, or None if it is not one."""
    items = msg.get("results")
    if not isinstance(items, list):
        return None
    try:
        return [_recipe_result(d) for d in items]
    except (TypeError, ValueError, KeyError):
        return None


def _known(cls, d: dict) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"{cls.__name__}: not an object")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _recipe_result(d: dict) -> RecipeResult:
    from nsbox.verify.results import RecipeResult

    values = _known(RecipeResult, d)
    values["checks"] = [_check(c) for c in values.get("checks", [])]
    return RecipeResult(**values)


def _check(d: dict):
    from nsbox.verify.results import CheckResult, Endpoint

    values = _known(CheckResult, d)
    for key in ("local", "seen"):
        if values.get(key) is not None:
            values[key] = Endpoint(**_known(Endpoint, values[key]))
    return CheckResult(**values)


def ended_early(names: list[str], rc: int) -> list[RecipeResult]:
    """What the report says when the sandbox ended without its results."""
    from nsbox.verify.results import RecipeResult

    return [RecipeResult(name, "fail", error=no_result_text(rc)) for name in names]


def no_result_text(rc: int) -> str:
    return f"no result: the recipe process ended early (exit {rc})"


def interrupted_text(signum: int) -> str:
    import signal

    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return f"interrupted ({name}) before it finished"


def finish(results: list[RecipeResult], plan: list[str], error: str) -> list[RecipeResult]:
    """RESULTS, then each recipe of PLAN without one, failed with ERROR."""
    from nsbox.verify.results import RecipeResult

    done = [r.recipe for r in results]
    rest = list(plan)
    for name in done:  # one entry of the plan per result: a name may be run twice
        if name in rest:
            rest.remove(name)
    return [*results, *(RecipeResult(n, "fail", error=error) for n in rest)]


def reporter(fmt: str, output: str | None, names: list[str], *, streamed: list[int] | None = None,
             quiet: bool = False) -> Callable[[int, dict | None], int]:
    """The supervisor's last step: given the sandbox's exit status and message,
    write the report and return nsbox's exit code. STREAMED[0]: how many recipes'
    sections were already printed as they came (text to stdout); the report goes on
    from there."""

    def report(rc: int, msg: dict | None) -> int:
        from nsbox.errors import NsboxError
        from nsbox.report import output as report_output
        from nsbox.verify.results import exit_code

        shown = streamed[0] if streamed else 0
        if msg is not None and "failed" in msg:  # the sandbox said why on stderr already
            code = msg["failed"]
            return code if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 256 else 1
        if msg is not None and "partial" in msg:  # it ended without its last word: keep what finished
            done = results_from_message({"results": msg["partial"]}) or []
            plan = [str(n) for n in msg.get("plan") or []] or names
            if rc >= 128:
                results = finish(done, plan, interrupted_text(rc - 128))
            else:
                sys.stderr.write(f"nsbox: error: {no_result_text(rc)}\n")
                results, rc = finish(done, plan, no_result_text(rc)), 1
            try:
                report_output.emit(results, fmt, output, shown=shown, quiet=quiet)
            except NsboxError as e:
                sys.stderr.write(f"nsbox: error: {e}\n")
                return e.exit_code
            return rc
        results = results_from_message(msg) if msg is not None else None
        if results is None:
            if rc >= 128:  # a signal ended the run: the documented 128+N, no report, as always
                return rc
            sys.stderr.write(f"nsbox: error: {no_result_text(rc)}\n")
            results, rc = ended_early(names, rc), 1
        else:
            rc = rc if rc >= 128 else (2 if msg.get("refused") is True else exit_code(results))
        try:
            report_output.emit(results, fmt, output, shown=shown, quiet=quiet)
        except NsboxError as e:
            sys.stderr.write(f"nsbox: error: {e}\n")
            return e.exit_code
        return rc

    return report


def report_ended_early(fmt: str, output: str | None, names: list[str], rc: int) -> int:
    """On the host: recipe code ended the recipe jail before it answered (exit status
    RC, negative for a signal). The report says so, as the sandbox's supervisor's
    does; returns the exit code, 1."""
    from nsbox.errors import NsboxError
    from nsbox.report import output as report_output

    rc = 128 - rc if rc < 0 else rc
    sys.stderr.write(f"nsbox: error: {no_result_text(rc)}\n")
    try:
        report_output.emit(ended_early(names, rc), fmt, output)
    except NsboxError as e:
        sys.stderr.write(f"nsbox: error: {e}\n")
        return e.exit_code
    return 1
