"""Names cannot forge report lines or break out of graph labels (issue 12, item 9).

A check name with newlines tries to print a forged "PASS … / 1 passed" in the
text report and a forged "ok" line in KTAP; an interface name with quotes,
brackets and newlines tries to end a DOT or Mermaid label. The observers are
independent parsers: line counts of the text, tests/support/ktap_parser.py, graphviz's
own `dot -Tjson`, the Mermaid line grammar of tests/unit/test_unit_show.py, and
ElementTree / json for JUnit and JSON."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from tests.support import ktap_parser
from nsbox.model import Lab
from nsbox.plan.show import render as show
from nsbox.report import json_report, junit, ktap, text
from nsbox.textsafe import controls, dot_string, mermaid_text
from nsbox.verify.results import CheckResult, RecipeResult
from tests.support.mermaid import parse_mermaid

FORGED = "x\n  PASS  forged  allow, as expected\r\n0 failed\u2028ok 9 forged\n1 passed, 0 failed, 0 skipped"


def check(name: str, passed: bool) -> CheckResult:
    return CheckResult(name, "reach", "allow", "allow" if passed else "deny", passed, "why\nPASS  detail")


def results() -> list[RecipeResult]:
    return [RecipeResult("evil", "fail", 1.0, description="desc\nPASS forged",
                         checks=[check(FORGED, False)], artifacts_dir="/tmp/a\nok 1 forged")]


def text_report() -> str:
    buf = io.StringIO()
    text.print_report(results(), Console(file=buf, highlight=False, soft_wrap=True, no_color=True, width=100))
    return buf.getvalue()


def test_text_report_prints_no_forged_line():
    out = text_report()
    lines = out.splitlines()
    assert not any("PASS" in ln and "forged" in ln and not ln.lstrip().startswith(("FAIL", "evil")) for ln in lines
                   if not ln.startswith(" " * 8)), out
    # long text continues on lines indented by 8 (80 columns): none of them can pass for a
    # result line (those start at column 0 or 2), whatever the name holds
    assert all(len(ln) <= 80 for ln in lines), out
    assert sum(ln.endswith("skipped") and not ln.startswith(" ") for ln in lines) == 1, out
    assert lines[-1] == "0 passed, 1 failed, 0 skipped", out
    fail = [ln for ln in lines if ln.startswith("  FAIL  ")]
    assert len(fail) == 2 and "x\\n  PASS" in fail[0], out   # the check, then the recipe's verdict
    own = [ln for ln in lines if ln and not ln.startswith(" " * 8)]
    assert len(own) == 6, out  # recipe, check, artifacts, verdict, rerun, totals (the rest: continuations)


def test_ktap_check_name_cannot_forge_a_result():
    doc = ktap_parser.parse(ktap.render(results()))
    assert doc.unknown == [] and len(doc.tests) == 1
    block = doc.tests[0].subtests
    assert [t.verdict for t in block.tests] == ["fail"] and block.plan == 1
    assert doc.totals() == {"pass": 0, "fail": 1, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}


def test_junit_and_json_keep_the_name_as_data():
    root = ET.fromstring(junit.render(results()))
    cases = [c for c in root.iter("testcase") if c.get("classname", "").startswith("evil")]
    assert [c.get("name") for c in cases if c.get("name") != "teardown"][0].replace("\r", "") \
        .startswith("x\n  PASS")
    doc = json.loads(json_report.render(results()))
    assert doc["results"][0]["checks"][0]["name"] == FORGED


def test_escapes():
    assert controls("a\nb\\n\x1b") == "a\\nb\\\\n\\x1b"
    assert dot_string('a"];\nx') == '"a\\"];\\\\nx"'
    assert mermaid_text('a"]];<b>#') == "a#34;#93;#93;#59;#60;b#62;#35;"


HOSTILE = ['a"]x', "b\\", "c[[\"", "d|<b>"]


def hostile_lab() -> Lab:
    lab = Lab("t", description='evil"} graph {')
    n = lab.node('n"1')
    for i, name in enumerate(HOSTILE):
        lab.veth(n, name, lab.host, f"h{i}")
        n.address(name, f"10.0.{i}.2/24")
    return lab


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz's dot")
def test_dot_labels_hold_hostile_names():
    src = show(hostile_lab(), "dot")
    done = subprocess.run(["dot", "-Tjson"], input=src, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stderr, done.stderr + src
    graph = json.loads(done.stdout)
    labels = {o["name"]: o.get("label") for o in graph.get("objects", []) if "label" in o}
    # one node per interface (4 hostile + 4 host ends) and the two clusters: nothing extra was made
    assert sum(1 for o in graph["objects"] if not o["name"].startswith("cluster_")) == 8, labels
    for name in HOSTILE:
        assert any(label.startswith(controls(name)) for label in labels.values()), (name, labels)
    assert graph["name"] == 't'


def test_mermaid_labels_hold_hostile_names():
    src = show(hostile_lab(), "mermaid")
    groups, nodes, edges = parse_mermaid(src)
    assert len(groups) == 2 and len(nodes) == 8 and len(edges) == 4, src
    for line in src.splitlines():  # inside every label: no quote but the two that delimit it
        if '["' in line:
            inner = line.split('["', 1)[1].rsplit('"]', 1)[0].strip('[]"')
            assert '"' not in inner and "<b>" not in inner, line


def test_show_text_is_one_line_per_item():
    lab = Lab("t")
    n = lab.node("n")
    lab.veth(n, "a\nnode fake", lab.host, "h0")
    out = show(lab, "text")
    assert "\nnode fake" not in out and "a\\nnode fake (veth)" in out
