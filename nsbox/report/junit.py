"""`--format junit`: JUnit XML for CI dashboards (Jenkins, GitLab, GitHub actions).

    <testsuites name="nsbox" tests= failures= errors= time=>
      <testsuite name=RECIPE tests= failures= errors= skipped= time=>   one per recipe
        <testcase name=CHECK classname=RECIPE time=>                    one per check
          <failure message="expected X, observed Y" type="mismatch">    a failed check
          <system-out>detail, addresses, [[ATTACHMENT|path]]</system-out>

A recipe that could not be built is one testcase `build` holding an <error>
(an error after the checks ran, e.g. in teardown, adds a testcase `teardown`
or `run`); a skipped recipe is one testcase holding <skipped message=REASON>.
Valid against the Jenkins/Surefire junit-10.xsd (tests/data/junit-10.xsd), so
times have at most 3 decimals and <testsuites> carries no `skipped`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from nsbox.verify.results import CheckResult, RecipeResult

# Characters XML 1.0 cannot carry at all (not even escaped): C0 controls but tab/LF/CR, and U+FFFE/FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(s: object) -> str:
    return _NOT_XML.sub("?", str(s))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def error_case_name(r: RecipeResult) -> str:
    """Where a recipe's error happened, as the name of the testcase (and KTAP test) that reports it."""
    if not r.checks:
        return "build"
    return "teardown" if (r.error or "").startswith("teardown:") else "run"


def _case(suite: ET.Element, name: str, classname: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", name=_text(name), classname=_text(classname), time=_seconds(seconds))


def _check_case(suite: ET.Element, r: RecipeResult, c: CheckResult) -> None:
    case = _case(suite, c.name, r.recipe, c.duration_ms / 1000)
    if not c.passed:
        failure = ET.SubElement(case, "failure", message=_text(f"expected {c.expected}, observed {c.observed}"),
                                type="mismatch")
        failure.text = _text(c.detail)
    lines = [f"{c.kind}: expected: {c.expected}; observed: {c.observed}", c.detail]
    if c.attempts > 1:
        lines.append(f"after {c.attempts} probes")
    # Jenkins' junit-attachments convention: one [[ATTACHMENT|path]] per file, in system-out.
    # one line each (a newline in a path would forge another attachment line)
    lines += [f"[[ATTACHMENT|{' '.join(path.splitlines())}]]" for path in c.artifacts]
    ET.SubElement(case, "system-out").text = _text("\n".join(ln for ln in lines if ln))


def _suite(r: RecipeResult) -> ET.Element:
    suite = ET.Element("testsuite", name=_text(r.recipe))
    props = {"description": r.description, "artifacts_dir": r.artifacts_dir or ""}
    if any(props.values()):
        el = ET.SubElement(suite, "properties")
        for name, value in props.items():
            if value:
                ET.SubElement(el, "property", name=name, value=_text(value))
    failures = errors = skipped = tests = 0
    if r.status == "skip":
        case = _case(suite, r.recipe, r.recipe, r.duration_s)
        ET.SubElement(case, "skipped", message=_text(r.skip_reason or "skipped"))
        tests, skipped = 1, 1
    else:
        for c in r.checks:
            _check_case(suite, r, c)
            tests += 1
            failures += not c.passed
        if r.error:
            case = _case(suite, error_case_name(r), r.recipe, 0.0)
            err = ET.SubElement(case, "error", message=_text(r.error), type="error")
            err.text = _text(r.error)
            tests += 1
            errors += 1
    suite.attrib.update(tests=str(tests), failures=str(failures), errors=str(errors), skipped=str(skipped),
                        time=_seconds(r.duration_s))
    return suite


def render(results: list[RecipeResult]) -> str:
    root = ET.Element("testsuites", name="nsbox")
    suites = [_suite(r) for r in results]
    root.extend(suites)
    root.attrib.update(tests=str(sum(int(s.get("tests", 0)) for s in suites)),
                       failures=str(sum(int(s.get("failures", 0)) for s in suites)),
                       errors=str(sum(int(s.get("errors", 0)) for s in suites)),
                       time=_seconds(sum(r.duration_s for r in results)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
