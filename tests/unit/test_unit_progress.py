"""Output while nsbox works, without a kernel: per-recipe messages on the result pipe
(compatible with the one-message protocol), the supervisor's report when the sandbox
ends early after some recipes finished, progress only for a watcher, 80 columns."""

from __future__ import annotations

import io
import json
import os

from rich.console import Console

from nsbox.progress import Progress
from nsbox.report import text
from nsbox.sandbox import result_pipe
from nsbox.verify.results import CheckResult, RecipeResult


def _result(name: str) -> RecipeResult:
    return RecipeResult(name, "pass", duration_s=1.0,
                        checks=[CheckResult("tcp/7 a->b", "reach", "allow", "allow", True, detail="ok")])


def _through_a_pipe(send, on_result=None) -> tuple[result_pipe.Receiver, dict | None]:
    receiver = result_pipe.Receiver(on_result)
    os.set_inheritable(receiver.write_fd, False)
    fd = os.dup(receiver.write_fd)
    receiver.start()
    result_pipe._fd = fd
    try:
        send()
    finally:
        if result_pipe._fd is not None:  # the sandbox ended without its final message
            os.close(result_pipe._fd)
            result_pipe._fd = None
    return receiver, receiver.message(timeout=5)


def test_each_result_arrives_as_it_is_sent_and_the_final_message_still_rules():
    seen = []

    def send():
        result_pipe.send_plan(["one", "two"])
        result_pipe.send_one(_result("one"))
        result_pipe.send_one(_result("two"))
        result_pipe.send_results([_result("one"), _result("two")])

    receiver, msg = _through_a_pipe(send, seen.append)
    assert [r.recipe for r in seen] == ["one", "two"]          # shown as they came
    assert receiver.plan == ["one", "two"]
    assert [r.recipe for r in result_pipe.results_from_message(msg)] == ["one", "two"]


def test_a_sandbox_that_ends_after_one_recipe_reports_it_and_no_result_for_the_rest(capsys):
    def send():
        result_pipe.send_plan(["one", "two"])
        result_pipe.send_one(_result("one"))

    _, msg = _through_a_pipe(send)
    assert msg is not None and "partial" in msg
    rc = result_pipe.reporter("json", None, ["one", "two"])(0, msg)
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert rc == 1
    assert [(r["recipe"], r["status"]) for r in out["results"]] == [("one", "pass"), ("two", "fail")]
    assert out["results"][1]["error"] == "no result: the recipe process ended early (exit 0)"
    assert "no result" in captured.err


def test_a_sandbox_killed_by_a_signal_after_one_recipe_reports_the_rest_interrupted(capsys):
    def send():
        result_pipe.send_plan(["one", "two", "three"])
        result_pipe.send_one(_result("one"))

    _, msg = _through_a_pipe(send)
    rc = result_pipe.reporter("json", None, ["x"])(130, msg)
    out = json.loads(capsys.readouterr().out)
    assert rc == 130
    assert [r["error"] for r in out["results"]] == [None, "interrupted (SIGINT) before it finished",
                                                    "interrupted (SIGINT) before it finished"]


def test_nothing_at_all_is_still_no_result(capsys):
    _, msg = _through_a_pipe(lambda: None)
    assert msg is None
    assert result_pipe.reporter("json", None, ["x"])(0, msg) == 1


def test_text_sections_already_shown_are_not_printed_again(capsys):
    results = [_result("one"), _result("two")]
    text.print_report(results, Console(file=(buf := io.StringIO()), no_color=True, soft_wrap=True), shown=1)
    out = buf.getvalue()
    assert "one  " not in out.split("Summary")[0] and out.startswith("two  ")
    assert "  PASS  one" in out   # the summary has every recipe


def test_progress_only_for_a_watcher():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    piped = io.StringIO()
    p = Progress(2, stream=piped)
    p.start("bridge-mode")
    p.phase("building")
    assert piped.getvalue() == ""                       # piped: nothing extra
    tty = Tty()
    p = Progress(2, stream=tty)
    p.start("bridge-\nmode")
    assert tty.getvalue().startswith("nsbox: [1/2] bridge-\\nmode: starting")   # one line, escaped
    quiet = Tty()
    Progress(2, stream=quiet, quiet=True).start("x")
    assert quiet.getvalue() == ""
    verbose = io.StringIO()
    Progress(1, stream=verbose, verbose=True).start("x")
    assert verbose.getvalue().startswith("nsbox: x: starting")


def test_every_report_line_fits_80_columns():
    long = "w" * 150 + " " + "word " * 40
    r = RecipeResult("r" * 50, "fail", description=long, error=long, artifacts_dir="/" + "d" * 120,
                     checks=[CheckResult("c" * 90, "reach", "allow " + long, "deny " + long, False, detail=long)],
                     rerun="nsbox run " + long)
    buf = io.StringIO()
    text.print_report([r, _result("x")], Console(file=buf, no_color=True, soft_wrap=True, width=200))
    lines = buf.getvalue().splitlines()
    # Only a word longer than a line (a path, a command) may go past 80: it is never cut,
    # so it can be copied whole; it then stands alone after the indent or its label.
    over = [line for line in lines if len(line) > 80]
    assert all(len(line.split()[-1]) > 60 and len(line.split()) <= 2 for line in over), over
    joined = " ".join(line.strip() for line in lines)
    assert "word word" in joined and "w" * 150 in joined   # nothing lost or cut, only wrapped
    assert "/" + "d" * 120 + "/README.txt" in joined
