"""Reports only read results: JSON shape, text report and exit codes, from hand-made results."""

import io
import json

import pytest
from rich.console import Console

from nsbox.report import json_report, text
from nsbox.verify.results import CheckResult, RecipeResult, exit_code, summarize

CHECK_KEYS = {"name", "kind", "expected", "observed", "passed", "detail", "attempts", "duration_ms", "artifacts",
              "src", "dst", "dst_ip", "proto", "port", "local", "seen", "node", "answered_by"}
RESULT_KEYS = {"recipe", "status", "duration_s", "skip_reason", "error", "description", "checks",
               "namespaces", "build_ms", "teardown_ms", "matrices", "verify_ms", "artifacts_dir", "then_status", "rerun", "machines"}
STRUCTURED_NONE = {"src": None, "dst": None, "dst_ip": None, "proto": None, "port": None, "local": None,
                   "seen": None, "node": None, "answered_by": None}


def passed_check(name="icmp c1->c2"):
    return CheckResult(name, "reach", "allow", "allow", True, detail="3 ms", duration_ms=3.2)


def failed_check(name="tcp/80 internet->c2 (no route in)"):
    return CheckResult(name, "reach", "deny", "allow", False, detail="connected in 1 ms", attempts=4)


def passing(name="bridge-mode"):
    return RecipeResult(name, "pass", duration_s=1.23456, description="Docker's default bridge",
                        checks=[passed_check()], namespaces={"host": "host", "c1": "c1"},
                        build_ms=41.0, teardown_ms=5.0)


def failing(name="broken"):
    return RecipeResult(name, "fail", duration_s=2.0, checks=[passed_check(), failed_check()])


def skipped(name="macvlan", reason="kernel lacks ipvlan"):
    return RecipeResult(name, "skip", skip_reason=reason)


def render_text(results) -> str:
    buf = io.StringIO()
    text.print_report(results, Console(file=buf, width=200))
    return buf.getvalue()


# -- exit codes --

@pytest.mark.parametrize("results, code", [
    ([passing()], 0),
    ([passing(), passing("b")], 0),
    ([failing()], 1),
    ([passing(), failing()], 1),
    ([skipped(), failing()], 1),
    ([skipped()], 4),
    ([skipped(), skipped("b")], 4),
    ([passing(), skipped()], 0),
    ([], 0),
])
def test_exit_code(results, code):
    assert exit_code(results) == code


def test_summarize_counts_each_status():
    assert summarize([passing(), failing(), skipped(), skipped("b")]) == {"pass": 1, "fail": 1, "skip": 2}


# -- JSON --

def test_json_shape():
    doc = json.loads(json_report.render([passing(), failing(), skipped()]))
    assert set(doc) == {"schema_version", "results", "summary"}
    assert doc["summary"] == {"pass": 1, "fail": 1, "skip": 1}
    assert [r["recipe"] for r in doc["results"]] == ["bridge-mode", "broken", "macvlan"]
    for r in doc["results"]:
        assert set(r) == RESULT_KEYS
        assert r["status"] in ("pass", "fail", "skip")
        assert isinstance(r["duration_s"], (int, float))
        assert isinstance(r["checks"], list)
        for c in r["checks"]:
            assert set(c) == CHECK_KEYS
            assert isinstance(c["passed"], bool)


def test_json_values():
    doc = json.loads(json_report.render([passing(), failing(), skipped()]))
    ok, bad, skip = doc["results"]
    assert ok["duration_s"] == 1.235
    assert ok["skip_reason"] is None
    assert ok["namespaces"] == {"host": "host", "c1": "c1"}
    assert ok["checks"] == [{"name": "icmp c1->c2", "kind": "reach", "expected": "allow", "observed": "allow",
                             "passed": True, "detail": "3 ms", "attempts": 1, "duration_ms": 3.2, "artifacts": [],
                             **STRUCTURED_NONE}]
    assert [c["passed"] for c in bad["checks"]] == [True, False]
    assert bad["checks"][1]["expected"] == "deny" and bad["checks"][1]["observed"] == "allow"
    assert skip["skip_reason"] == "kernel lacks ipvlan"
    assert skip["checks"] == []


def test_json_of_nothing():
    assert json.loads(json_report.render([])) == {"schema_version": 1, "results": [],
                                                  "summary": {"pass": 0, "fail": 0, "skip": 0}}


# -- text --

def test_text_pass():
    out = render_text([passing()])
    assert "bridge-mode  Docker's default bridge" in out
    assert "PASS  icmp c1->c2  allow, as expected" in out
    assert "built 2 namespaces (host, c1) in 41 ms; torn down in 5 ms" in out
    assert "PASS  1 of 1 checks passed in 1.2 s" in out
    assert out.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"


def test_text_fail_shows_expected_observed_and_attempts():
    out = render_text([failing()])
    assert "FAIL  tcp/80 internet->c2 (no route in)  expected deny, observed allow" in out
    assert "connected in 1 ms (after 4 probes)" in out
    assert "FAIL  1 of 2 checks passed in 2.0 s" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"


def test_text_skip_shows_reason():
    out = render_text([skipped()])
    assert "SKIP  kernel lacks ipvlan" in out
    assert "checks passed" not in out
    assert out.splitlines()[-1] == "0 passed, 0 failed, 1 skipped"


def test_text_error_is_shown():
    r = RecipeResult("x", "fail", error="kernel refused veth: EPERM")
    out = render_text([r])
    assert "error: kernel refused veth: EPERM" in out
    assert "FAIL  0 of 0 checks passed" in out


def test_text_mixed_summary_line():
    out = render_text([passing(), failing(), skipped(), skipped("b")])
    assert out.rstrip("\n").splitlines()[-1] == "1 passed, 1 failed, 2 skipped"
    assert out.count("SKIP") == 4  # each skipped recipe, then its summary line


def test_text_check_names_align():
    r = RecipeResult("r", "pass", checks=[passed_check("a"), passed_check("much longer name")])
    lines = [ln for ln in render_text([r]).splitlines() if "expected" in ln]
    assert len(lines) == 2
    assert lines[0].index("expected") == lines[1].index("expected")


def test_text_escapes_rich_markup_in_names_and_reasons():
    out = render_text([RecipeResult("[bold]r", "pass", checks=[passed_check("[red]x[/red]")]),
                       skipped("s", reason="needs [b]mod[/b]")])
    assert "[bold]r" in out
    assert "[red]x[/red]" in out
    assert "needs [b]mod[/b]" in out


def test_text_fits_a_narrow_terminal_with_a_long_check_name():
    long = failed_check(name="conntrack host: http c1->internet (NAT) with a very long name indeed")
    short = CheckResult("icmp c1->c2", "reach", "allow", "allow", True, "echo reply to 172.17.0.3")
    r = RecipeResult("bridge-mode", "fail", 2.0, description="d", checks=[short, long])
    line = next(ln for ln in render_text([r]).splitlines() if "icmp c1->c2" in ln)
    assert len(line) <= 80, "one long check name must not push every verdict off an 80-column screen"


def test_text_fail_says_how_to_look_at_the_lab():
    assert "to look at the live lab: nsbox run broken --then bash" in render_text([failing()])
    assert "to look at the live lab" not in render_text([passing()])


def test_text_report_ends_with_a_line_per_recipe_when_there_are_several():
    from io import StringIO

    from rich.console import Console

    from nsbox.report.text import print_report
    from nsbox.verify.results import CheckResult, RecipeResult

    ok = RecipeResult("bridge-mode", "pass", checks=[CheckResult("c", "reach", "allow", "allow", True)])
    skipped = RecipeResult("needs-vlan", "skip", skip_reason="this kernel lacks vlan (Operation not supported)")
    buf = StringIO()
    print_report([ok, skipped], Console(file=buf, width=120, color_system=None))
    lines = buf.getvalue().splitlines()
    tail = lines[lines.index("Summary"):]
    tail = [ln for ln in tail if ln.strip()]
    assert tail[0] == "Summary"
    assert tail[1].split()[:2] == ["PASS", "bridge-mode"] and "1 of 1 checks passed" in tail[1]
    assert tail[2].split()[:2] == ["SKIP", "needs-vlan"] and "lacks vlan" in tail[2]
    assert tail[3] == "1 passed, 0 failed, 1 skipped"
