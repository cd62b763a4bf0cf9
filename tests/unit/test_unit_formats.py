"""Report formats for CI, from hand-made results, read back by parsers that are not nsbox's:
junitparser and the Jenkins/Surefire JUnit XSD (xmlschema) for JUnit XML, a KTAP
parser written from ktap.rst (tests/support/ktap_parser.py) for KTAP, json for JSON.
Also --output (atomic write, bad paths refused before anything is built) and
the exit status with --then."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import junitparser
import pytest
import xmlschema

from tests.support import ktap_parser
from nsbox.errors import UsageError
from nsbox.report import json_report, junit, ktap, output
from nsbox.verify.results import CheckResult, Endpoint, RecipeResult, exit_code
from tests.support.paths import DATA, REPO

XSD = DATA / "junit-10.xsd"


def reach(name: str, passed: bool = True, expected: str = "allow", observed: str | None = None,
          detail: str = "connected", **kw) -> CheckResult:
    return CheckResult(name, "reach", expected, observed or (expected if passed else "deny"), passed, detail,
                       duration_ms=2.5, src="c1", dst="c2", dst_ip="172.17.0.3", proto="tcp", port=7,
                       local=Endpoint("172.17.0.2", 40000), seen=Endpoint("172.17.0.2", 40000), **kw)


def passing() -> RecipeResult:
    return RecipeResult("bridge-mode", "pass", 0.5, description="Docker's default bridge",
                        checks=[reach("icmp c1->c2"), reach("tcp/7 c1->c2")])


def failing() -> RecipeResult:
    return RecipeResult("broken", "fail", 1.25, checks=[reach("icmp c1->c2"),
                                                        reach("tcp/80 c1->web", passed=False, detail="timeout"),
                                                        reach("udp/53 c1->dns")])


def skipped() -> RecipeResult:
    return RecipeResult("macvlan", "skip", 0.01, skip_reason="kernel lacks macvlan")


def build_error() -> RecipeResult:
    return RecipeResult("nobuild", "fail", 0.2, error="kernel refused veth c1: EPERM")


def teardown_error() -> RecipeResult:
    return RecipeResult("leaky", "fail", 0.3, checks=[reach("icmp c1->c2")], error="teardown: netns c1 busy")


MIX = [passing(), failing(), skipped(), build_error(), teardown_error()]


# ----------------------------------------------------------------------------- KTAP

def test_ktap_mix_parses_and_agrees_with_the_results():
    doc = ktap_parser.parse(ktap.render(MIX))
    assert doc.version == "KTAP version 1"
    assert doc.unknown == []
    assert doc.plan == 5
    assert [(t.description, t.verdict) for t in doc.tests] == [
        ("bridge-mode", "pass"), ("broken", "fail"), ("macvlan", "skip"), ("nobuild", "fail"), ("leaky", "fail")]
    ok, bad, skip, nobuild, leaky = doc.tests
    assert [(t.number, t.description, t.verdict) for t in ok.subtests.tests] == [
        (1, "icmp c1->c2", "pass"), (2, "tcp/7 c1->c2", "pass")]
    assert [t.verdict for t in bad.subtests.tests] == ["pass", "fail", "pass"]
    assert "expected: allow; observed: deny" in bad.subtests.tests[1].diagnostics
    assert "timeout" in bad.subtests.tests[1].diagnostics
    assert skip.subtests is None and skip.reason == "kernel lacks macvlan"
    assert [(t.description, t.verdict, t.reason) for t in nobuild.subtests.tests] == [
        ("build", "error", "kernel refused veth c1: EPERM")]
    assert [(t.description, t.verdict) for t in leaky.subtests.tests] == [("icmp c1->c2", "pass"),
                                                                        ("teardown", "error")]
    for t in doc.tests:
        if t.subtests is not None:
            assert t.subtests.version == "KTAP version 1"
            assert t.subtests.plan == len(t.subtests.tests)


def test_ktap_totals_count_the_leaves():
    doc = ktap_parser.parse(ktap.render(MIX))
    leaves = doc.leaves()
    counted = {k: sum(t.verdict == k for t in leaves) for k in ("pass", "fail", "xfail", "skip", "error")}
    assert doc.totals() == {**counted, "xpass": 0}
    assert doc.totals() == {"pass": 5, "fail": 1, "xfail": 0, "xpass": 0, "skip": 1, "error": 2}


def test_ktap_nesting_is_two_spaces():
    lines = ktap.render([passing()]).splitlines()
    assert lines[:2] == ["KTAP version 1", "1..1"]
    assert "  KTAP version 1" in lines and "  1..2" in lines and "  ok 1 icmp c1->c2" in lines
    assert lines[-2:] == ["ok 1 bridge-mode", "# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0"]


@pytest.mark.parametrize("name", ["tcp/80 #1 c1->c2", "a\nb", "   ", "ok 2 # SKIP fake"])
def test_ktap_descriptions_hold_no_hash_and_one_line(name):
    r = RecipeResult("r#1", "fail", checks=[reach(name, passed=False, detail="line1\nline2 # x")])
    text = ktap.render([r])
    doc = ktap_parser.parse(text)
    assert doc.unknown == [] and doc.tests[0].subtests.unknown == []
    [check] = doc.tests[0].subtests.tests
    assert "#" not in check.description and check.description
    assert check.verdict == "fail", "a name that looks like a directive must not turn the failure into a SKIP"
    assert "#" not in doc.tests[0].description


def test_ktap_all_skipped_and_empty():
    doc = ktap_parser.parse(ktap.render([skipped(), skipped()]))
    assert [t.verdict for t in doc.tests] == ["skip", "skip"]
    assert doc.totals()["skip"] == 2
    empty = ktap_parser.parse(ktap.render([]))
    assert empty.plan == 0 and empty.tests == []


def test_ktap_artifacts_are_a_diagnostic():
    c = reach("tcp/80 c1->web", passed=False)
    c.artifacts = ["/tmp/a/conntrack.txt", "/tmp/a/capture.pcap"]
    doc = ktap_parser.parse(ktap.render([RecipeResult("r", "fail", checks=[c], artifacts_dir="/tmp/a")]))
    assert "artifacts: /tmp/a/conntrack.txt /tmp/a/capture.pcap" in doc.tests[0].subtests.tests[0].diagnostics
    assert "artifacts_dir: /tmp/a" in doc.tests[0].subtests.diagnostics


def test_ktap_parser_rejects_what_the_grammar_forbids():
    """The parser used above is not a rubber stamp."""
    for bad in ["KTAP version 1\n1..2\nok 1 a\n",                      # plan disagrees
                "KTAP version 1\n1..2\nok 1 a\nok 3 b\n",              # numbering
                "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 parent\n",  # failed child, ok parent
                "1..1\nok 1 a\n",                                      # no version line
                "KTAP version 1\n1..1\nok 1 a # ERROR x\n"]:           # ERROR with ok
        with pytest.raises(ktap_parser.KtapError):
            ktap_parser.parse(bad)


# ----------------------------------------------------------------------------- JUnit

@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def junit_doc(results, tmp_path) -> junitparser.JUnitXml:
    path = tmp_path / "report.xml"
    path.write_text(junit.render(results))
    return junitparser.JUnitXml.fromfile(str(path))


def test_junit_is_valid_against_the_jenkins_schema(schema):
    schema.validate(junit.render(MIX))
    schema.validate(junit.render([]))


def test_junit_mix_reads_back_with_junitparser(tmp_path):
    doc = junit_doc(MIX, tmp_path)
    suites = {s.name: s for s in doc}
    assert list(suites) == ["bridge-mode", "broken", "macvlan", "nobuild", "leaky"]
    counts = {n: (s.tests, s.failures, s.errors, s.skipped) for n, s in suites.items()}
    assert counts == {"bridge-mode": (2, 0, 0, 0), "broken": (3, 1, 0, 0), "macvlan": (1, 0, 0, 1),
                      "nobuild": (1, 0, 1, 0), "leaky": (2, 0, 1, 0)}
    for s in suites.values():  # the suite's counts agree with its testcases
        cases = list(s)
        assert s.tests == len(cases)
        assert s.failures == sum(isinstance(r, junitparser.Failure) for c in cases for r in c.result)
        assert s.errors == sum(isinstance(r, junitparser.Error) for c in cases for r in c.result)
        assert s.skipped == sum(isinstance(r, junitparser.Skipped) for c in cases for r in c.result)
    broken = {c.name: c for c in suites["broken"]}
    assert [c.is_passed for c in broken.values()] == [True, False, True]
    [failure] = broken["tcp/80 c1->web"].result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == "expected allow, observed deny" and failure.text == "timeout"
    assert broken["tcp/80 c1->web"].classname == "broken"
    assert broken["tcp/80 c1->web"].time == pytest.approx(0.0025, abs=0.001)
    [skip] = list(suites["macvlan"])[0].result
    assert isinstance(skip, junitparser.Skipped) and skip.message == "kernel lacks macvlan"
    [build] = list(suites["nobuild"])
    assert build.name == "build" and build.result[0].message == "kernel refused veth c1: EPERM"
    assert [c.name for c in suites["leaky"]] == ["icmp c1->c2", "teardown"]
    assert suites["broken"].time == pytest.approx(1.25)
    assert (doc.tests, doc.failures, doc.errors) == (9, 1, 2)


def test_junit_escapes_markup_and_drops_characters_xml_cannot_hold(tmp_path, schema):
    r = RecipeResult("<r&\"x\">", "fail", checks=[reach("a <b> & \"c\"", passed=False, detail="bad\x00\x1b[1mbyte")])
    text = junit.render([r])
    schema.validate(text)
    [suite] = junit_doc([r], tmp_path)
    assert suite.name == "<r&\"x\">"
    [case] = suite
    assert case.name == "a <b> & \"c\""
    assert "\x00" not in case.result[0].text


def test_junit_points_to_artifacts(tmp_path, schema):
    c = reach("tcp/80 c1->web", passed=False)
    c.artifacts = ["/tmp/a/conntrack.txt", "/tmp/a/capture.pcap"]
    r = RecipeResult("r", "fail", checks=[c], artifacts_dir="/tmp/a")
    schema.validate(junit.render([r]))
    [suite] = junit_doc([r], tmp_path)
    assert {p.name: p.value for p in suite.properties()} == {"artifacts_dir": "/tmp/a"}
    [case] = suite
    assert "[[ATTACHMENT|/tmp/a/conntrack.txt]]" in case.system_out
    assert "[[ATTACHMENT|/tmp/a/capture.pcap]]" in case.system_out


def test_junit_times_fit_the_schema(schema):
    r = RecipeResult("slow", "pass", 12345.6789, checks=[reach("x")])
    schema.validate(junit.render([r]))
    assert 'time="12345.679"' in junit.render([r])


# ----------------------------------------------------------------------------- JSON

def test_json_has_schema_version_and_structured_fields():
    doc = json.loads(json_report.render([failing(), skipped()]))
    assert doc["schema_version"] == 1
    assert doc["summary"] == {"pass": 0, "fail": 1, "skip": 1}
    c = doc["results"][0]["checks"][1]
    assert {k: c[k] for k in ("src", "dst", "dst_ip", "proto", "port", "expected", "observed", "passed")} == {
        "src": "c1", "dst": "c2", "dst_ip": "172.17.0.3", "proto": "tcp", "port": 7,
        "expected": "allow", "observed": "deny", "passed": False}
    assert c["local"] == {"ip": "172.17.0.2", "port": 40000} and c["seen"] == {"ip": "172.17.0.2", "port": 40000}
    assert doc["results"][0]["then_status"] is None


def test_every_format_gives_the_same_verdicts(tmp_path):
    """JSON, JUnit and KTAP, each read by its own parser, tell the same story."""
    from_json = {(r["recipe"], c["name"]): c["passed"] for r in json.loads(json_report.render(MIX))["results"]
                 for c in r["checks"]}
    from_junit = {(s.name, c.name): c.is_passed for s in junit_doc(MIX, tmp_path) for c in s
                  if c.name not in ("build", "teardown", "run") and c.name != s.name}
    doc = ktap_parser.parse(ktap.render(MIX))
    from_ktap = {(t.description, c.description): c.ok for t in doc.tests if t.subtests for c in t.subtests.tests
                 if c.directive != "ERROR"}
    assert from_json == from_junit == from_ktap
    assert len(from_json) == 6  # 2 + 3 + 1 checks; skips and errors are not checks


# ----------------------------------------------------------------------------- exit status with --then

@pytest.mark.parametrize("results, code", [
    ([RecipeResult("a", "pass", then_status=3)], 3),
    ([RecipeResult("a", "pass", then_status=0)], 0),
    ([RecipeResult("a", "fail", then_status=3)], 1),          # a failed check is the bigger news
    ([RecipeResult("a", "pass", then_status=3), RecipeResult("b", "fail")], 1),
    ([RecipeResult("a", "pass", then_status=0), RecipeResult("b", "pass", then_status=7),
      RecipeResult("c", "pass", then_status=9)], 7),          # the first non-zero status
    ([RecipeResult("a", "pass", then_status=130), skipped()], 130),
    ([skipped()], 4),
])
def test_exit_code_with_then(results, code):
    assert exit_code(results) == code


# ----------------------------------------------------------------------------- --output

def test_output_path_checks(tmp_path):
    output.check_output_path(str(tmp_path / "r.xml"), sandboxed=True)
    with pytest.raises(UsageError, match="does not exist"):
        output.check_output_path(str(tmp_path / "nope" / "r.xml"), sandboxed=True)
    with pytest.raises(UsageError, match="is a directory"):
        output.check_output_path(str(tmp_path), sandboxed=True)
    with pytest.raises(UsageError, match="private to the sandbox"):
        output.check_output_path("/run/r.xml", sandboxed=True)
    output.check_output_path("/run/r.xml", sandboxed=False)


def test_write_atomically_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "r.ktap"
    target.write_text("old")
    old_umask = os.umask(0o022)
    try:
        output.write_atomically(str(target), "new\n")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.ktap"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.parametrize("fmt", output.FORMATS)
def test_render_every_format(fmt):
    text = output.render(MIX, fmt)
    assert "broken" in text and text.endswith("\n")
    assert "\x1b[" not in text, "a report written to a file carries no terminal colour codes"


def nsbox(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path, words", [
    ("/nonexistent-nsbox-dir/report.xml", ["directory /nonexistent-nsbox-dir does not exist"]),
    (".", ["is a directory"]),
])
def test_a_bad_output_path_is_one_line_error_before_anything_runs(path, words):
    p = nsbox("run", "bridge-mode", "--format", "junit", "--output", path)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    [line] = p.stderr.splitlines()
    assert line.startswith("nsbox: error: --output")
    for w in words:
        assert w in line


def test_format_choices_are_listed_in_help():
    p = nsbox("run", "--help")
    assert p.returncode == 0
    for word in ("text|json|junit|ktap", "--output"):
        assert word in p.stdout
