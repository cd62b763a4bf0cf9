"""Report formats from real runs: `nsbox run --format junit|ktap|json` on a real lab,
each document read by a parser that is not nsbox's (junitparser and the Jenkins
junit-10.xsd; tests/support/ktap_parser.py, written from ktap.rst; json).

The verdicts must agree across formats, a lab whose allow check cannot pass
(its server exists, but no route leads to it) must read `not ok`/<failure> and
exit 1, and `--then`'s exit status must come through on a passing lab.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import junitparser
import pytest
import xmlschema

from tests.support import ktap_parser
from tests.support.paths import DATA

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and veth pairs"),
    pytest.mark.tools("unshare", "nsenter"),
]

XSD = DATA / "junit-10.xsd"

# a and c share a subnet; b sits on another one and nobody routes to it, so
# "tcp/7 a->b" is expected to connect (b serves tcp/7) and cannot.
NO_ROUTE = '''
from nsbox.recipe import recipe

@recipe("fmt-no-route")
def build(lab):
    """b serves tcp/7, but no node has a route to b's subnet."""
    a, b, c = lab.node("a"), lab.node("b"), lab.node("c")
    lab.veth(a, "eth0", c, "eth0")
    a.address("eth0", "10.99.1.1/24")
    c.address("eth0", "10.99.1.2/24")
    lab.veth(a, "eth1", b, "eth0")
    b.address("eth0", "10.99.2.1/24")
    a.address("eth1", "10.99.3.1/24")
    b.serve("tcp", 7)
    lab.expect("a", "c", "icmp")
    lab.expect("a", "b", "tcp", 7)
'''


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture
def no_route_dir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "fmt_no_route.py").write_text(textwrap.dedent(NO_ROUTE))
    return d


def verdicts_json(run) -> dict[tuple[str, str], bool]:
    return {(r["recipe"], c["name"]): c["passed"] for r in run.json["results"] for c in r["checks"]}


def verdicts_junit(xml: str, tmp_path: Path, schema: xmlschema.XMLSchema) -> dict[tuple[str, str], bool]:
    schema.validate(xml)
    path = tmp_path / "read.xml"
    path.write_text(xml)
    return {(s.name, c.name): c.is_passed for s in junitparser.JUnitXml.fromfile(str(path)) for c in s}


def verdicts_ktap(text: str) -> dict[tuple[str, str], bool]:
    doc = ktap_parser.parse(text)
    assert doc.unknown == [], doc.unknown
    leaves = doc.leaves()
    totals = doc.totals()
    assert totals is not None, "no Totals line"
    assert totals["pass"] == sum(t.verdict == "pass" for t in leaves)
    assert totals["fail"] == sum(t.verdict == "fail" for t in leaves)
    return {(t.description, c.description): c.ok for t in doc.tests for c in (t.subtests.tests if t.subtests else [])}


def test_bridge_mode_in_every_format_agrees(nsbox, tmp_path, schema):
    as_json = nsbox.run("run", "bridge-mode", "--format", "json")
    as_junit = nsbox.run("run", "bridge-mode", "--format", "junit")
    as_ktap = nsbox.run("run", "bridge-mode", "--format", "ktap")
    for run in (as_json, as_junit, as_ktap):
        assert run.returncode == 0, run.describe()
    expected = verdicts_json(as_json)
    assert len(expected) >= 8 and all(expected.values()), as_json.describe()
    assert as_json.json["schema_version"] == 1
    assert verdicts_junit(as_junit.stdout, tmp_path, schema) == expected
    assert verdicts_ktap(as_ktap.stdout) == expected
    doc = ktap_parser.parse(as_ktap.stdout)
    assert [(t.description, t.verdict) for t in doc.tests] == [("bridge-mode", "pass")]


def test_json_structured_fields_from_a_real_run(nsbox):
    run = nsbox.run("run", "bridge-mode", "--format", "json")
    assert run.returncode == 0, run.describe()
    checks = run.checks()
    nat = checks["http c1->internet (NAT)"]
    assert (nat["src"], nat["dst"], nat["dst_ip"], nat["proto"], nat["port"]) == (
        "c1", "internet", "203.0.113.1", "http", 80)
    # The probe left from c1's address; the server saw the host's uplink: MASQUERADE, in fields, not prose.
    assert nat["local"]["ip"] == "172.17.0.2"
    assert nat["seen"]["ip"] == "203.0.113.2"
    assert nat["local"]["port"] == nat["seen"]["port"], "MASQUERADE kept the source port"
    ct = checks["conntrack host: http c1->internet (NAT)"]
    assert ct["node"] == "host" and ct["local"] == nat["local"]
    deny = checks["tcp/80 internet->c2 (direct routing)"]
    assert deny["observed"].startswith("deny, dropped by host raw") and deny["seen"] is None
    assert (deny["src"], deny["dst"], deny["dst_ip"], deny["port"]) == ("internet", "c2", "172.17.0.3", 80)


def test_a_failing_lab_reads_not_ok_and_failure_and_exits_1(nsbox, tmp_path, schema, no_route_dir):
    args = ("run", "fmt-no-route", "--recipes", str(no_route_dir), "--timeout", "0.3", "--settle", "0.5")
    as_json = nsbox.run(*args, "--format", "json")
    as_junit = nsbox.run(*args, "--format", "junit")
    as_ktap = nsbox.run(*args, "--format", "ktap")
    for run in (as_json, as_junit, as_ktap):
        assert run.returncode == 1, run.describe()
    expected = verdicts_json(as_json)
    assert expected == {("fmt-no-route", "icmp a->c"): True, ("fmt-no-route", "tcp/7 a->b"): False}, \
        as_json.describe()
    assert verdicts_junit(as_junit.stdout, tmp_path, schema) == expected
    assert verdicts_ktap(as_ktap.stdout) == expected

    [suite] = junitparser.JUnitXml.fromstring(as_junit.stdout)
    assert (suite.tests, suite.failures, suite.errors) == (2, 1, 0)
    failed = next(c for c in suite if c.name == "tcp/7 a->b")
    assert isinstance(failed.result[0], junitparser.Failure)
    assert failed.result[0].message.startswith("expected allow, observed deny")

    doc = ktap_parser.parse(as_ktap.stdout)
    [recipe] = doc.tests
    assert (recipe.ok, recipe.verdict) == (False, "fail")
    assert [(t.description, t.ok) for t in recipe.subtests.tests] == [("icmp a->c", True), ("tcp/7 a->b", False)]
    assert doc.totals() == {"pass": 1, "fail": 1, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}


def test_output_file_holds_the_report_and_stdout_stays_empty(nsbox, tmp_path, schema):
    out = tmp_path / "report.xml"
    run = nsbox.run("run", "bridge-mode", "--format", "junit", "--output", str(out), "--then", "echo from-then")
    assert run.returncode == 0, run.describe()
    assert run.stdout == "", "with --output nothing else may reach stdout"
    assert "from-then" in run.stderr
    schema.validate(str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.xml"], "no temporary file left behind"
    ktap_out = tmp_path / "report.ktap"
    run = nsbox.run("run", "bridge-mode", "--format", "ktap", "--output", str(ktap_out))
    assert run.returncode == 0 and run.stdout == "", run.describe()
    assert all(verdicts_ktap(ktap_out.read_text()).values())


def test_then_exit_status_passes_through(nsbox, no_route_dir):
    run = nsbox.run("run", "bridge-mode", "--then", "exit 3", "--format", "json")
    assert run.returncode == 3, run.describe()
    assert run.result["status"] == "pass" and run.result["then_status"] == 3
    ok = nsbox.run("run", "bridge-mode", "--then", "true")
    assert ok.returncode == 0, ok.describe()
    # A failed check is the more important news: it wins over --then's status.
    failed = nsbox.run("run", "fmt-no-route", "--recipes", str(no_route_dir), "--timeout", "0.3", "--settle", "0.5",
                       "--then", "exit 3", "--format", "json")
    assert failed.returncode == 1, failed.describe()
    assert failed.result["then_status"] == 3


def test_run_all_with_a_skipped_recipe_in_every_format(nsbox, tmp_path, schema):
    """`nsbox run --all` over the shipped recipes plus one this kernel cannot run (it
    needs 802.1q VLANs, which this machine lacks): a pass, a skip with its reason."""
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "needs_vlan.py").write_text(textwrap.dedent('''
        from nsbox.recipe import recipe

        @recipe("needs-vlan")
        def build(lab):
            """Needs 802.1q."""
            lab.require("vlan")
            a = lab.node("a")
            lab.veth(a, "eth0", lab.host, "v0")
            a.address("eth0", "10.98.0.2/24")
            lab.host.address("v0", "10.98.0.1/24")
            lab.expect("a", "host", "icmp")
    '''))
    from nsbox.host import features
    if not features.missing(frozenset({"vlan"})):
        pytest.skip("this kernel has 802.1q: the recipe would not be skipped")
    junit = tmp_path / "all.xml"
    run = nsbox.run("run", "--all", "--recipes", str(d), "--timeout", "0.3", "--format", "junit", "--output", str(junit))
    assert run.returncode == 0, run.describe()
    schema.validate(str(junit))
    suites = {s.name: s for s in junitparser.JUnitXml.fromfile(str(junit))}
    assert set(suites) >= {"bridge-mode", "needs-vlan"}
    assert suites["bridge-mode"].failures == 0 and suites["bridge-mode"].tests >= 8
    assert suites["needs-vlan"].skipped == 1
    ktap = nsbox.run("run", "--all", "--recipes", str(d), "--timeout", "0.3", "--format", "ktap")
    assert ktap.returncode == 0, ktap.describe()
    doc = ktap_parser.parse(ktap.stdout)
    by_name = {t.description: t for t in doc.tests}
    assert by_name["bridge-mode"].verdict == "pass"
    assert by_name["needs-vlan"].verdict == "skip" and "vlan" in by_name["needs-vlan"].reason
    # shipped recipes this kernel cannot run (ipvlan-mode here) skip too, each with its reason
    skipped = [t for t in doc.tests if t.verdict == "skip"]
    assert doc.totals()["skip"] == len(skipped) and doc.totals()["fail"] == 0
    assert all(t.reason for t in skipped)
