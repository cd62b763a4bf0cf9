"""Issue 12, item 5: recipe code cannot end a failing run as a silent pass.

A recipe that calls os._exit(0) or os.execv() in build(), or starts a thread
that ends the process while the checks run, used to make a sandboxed run exit 0
with an empty report. The process that reports is now one recipe code cannot
reach (the sandbox's supervisor; on the host, recipe code only ever runs in the
recipe jail): the run exits non-zero and the report itself says what happened.
The report is read from the file nsbox wrote (--output), parsed as its format.
"""

from __future__ import annotations

import json
import os
import textwrap
import xml.etree.ElementTree as ET

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces and veth pairs"),
    pytest.mark.tools("ip", "unshare", "nsenter"),
]

NO_RESULT = "no result: the recipe process ended early (exit 0)"

_HEADER = '''
    """Test recipe: {doc}"""
    import os
    import threading
    import time

    from nsbox.model import Lab
    from nsbox.recipe import recipe
'''

# A lab whose only check fails: b drops tcp/7 although it is expected to pass.
_FAILING_LAB = '''
    b = lab.node("b")
    lab.veth(lab.host, "eth0", b, "eth0")
    lab.host.address("eth0", "198.51.100.1/24")
    b.address("eth0", "198.51.100.2/24")
    b.serve("tcp", 7)
    b.iptables("filter").append("INPUT", "-p tcp -m tcp --dport 7 -j DROP")
    lab.expect("host", "b", "tcp", 7)
'''

RECIPES = {
    "exit-zero": ("build() calls os._exit(0).", "os._exit(0)"),
    "exec-true": ("build() replaces the process with /bin/true.", 'os.execv("/bin/true", ["true"])'),
    "thread-exit": ("a thread started in build() calls os._exit(0) while the checks run.",
                    "threading.Thread(target=lambda: (time.sleep(0.5), os._exit(0)), daemon=True).start()"),
}


def _recipe_text(name: str) -> str:
    doc, action = RECIPES[name]
    body = textwrap.indent(textwrap.dedent(_FAILING_LAB), "    ")
    return (textwrap.dedent(_HEADER.format(doc=doc)) + f'\n\n@recipe("{name}")\ndef build(lab: Lab) -> None:\n'
            f'    """{doc}"""\n    {action}\n' + body)


@pytest.fixture
def recipe_dir(tmp_path):
    d = tmp_path / "recipes"
    d.mkdir(mode=0o755)
    for name in RECIPES:
        (d / f"{name.replace('-', '_')}.py").write_text(_recipe_text(name))
    return d


def _junit_errors(path) -> list[str]:
    root = ET.parse(path).getroot()
    return [e.get("message", "") for e in root.iter("error")]


@pytest.mark.parametrize("mode", ["sandbox", "on-host"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_code_cannot_end_a_run_as_a_silent_pass(name, mode, recipe_dir, tmp_path, nsbox, host_unchanged) -> None:
    report = tmp_path / "report.xml"
    flags = ["--on-host"] if mode == "on-host" else []
    run = nsbox.run("run", name, "--recipes", str(recipe_dir), "--format", "junit", "--output", str(report),
                    "--timeout", "0.3", "--settle", "3", *flags, timeout=60)
    assert run.returncode == 1, run.describe()
    assert report.exists(), "no report was written"
    if mode == "on-host" and name == "thread-exit":
        # The thread lived and died in the recipe jail: the run went on and reported the failing check.
        root = ET.parse(report).getroot()
        assert [f.get("message", "") for f in root.iter("failure")], report.read_text()
        assert not _junit_errors(report), report.read_text()
    else:
        assert _junit_errors(report) == [NO_RESULT], report.read_text()
        assert NO_RESULT in run.stderr


@pytest.mark.parametrize("fmt", ["json", "ktap", "text"])
def test_the_report_says_no_result_in_every_format(fmt, recipe_dir, nsbox, host_unchanged) -> None:
    run = nsbox.run("run", "exit-zero", "--recipes", str(recipe_dir), "--format", fmt, timeout=60)
    assert run.returncode == 1, run.describe()
    if fmt == "json":
        result = json.loads(run.stdout)["results"][0]
        assert (result["recipe"], result["status"], result["error"]) == ("exit-zero", "fail", NO_RESULT)
    elif fmt == "ktap":
        assert f"not ok 1 build # ERROR {NO_RESULT}" in run.stdout, run.stdout
        assert "not ok 1 exit-zero" in run.stdout
    else:
        assert NO_RESULT in run.stdout and "1 failed" in run.stdout, run.stdout


def test_a_normal_sandboxed_run_still_reports_through_the_supervisor(recipe_dir, nsbox, host_unchanged) -> None:
    """The pipe carries real results: a passing recipe's checks arrive whole, bad input is still exit 2."""
    run = nsbox.run("run", "bridge-mode", "--format", "json", timeout=60)
    assert run.returncode == 0, run.describe()
    result = json.loads(run.stdout)["results"][0]
    assert result["status"] == "pass" and len(result["checks"]) > 5
    assert all(c["passed"] for c in result["checks"])
    bad = nsbox.run("run", "bridge-mode", "--set", "containers=1", "--format", "json")
    assert bad.returncode == 2 and bad.stdout == "", bad.describe()
    assert len(bad.stderr.strip().splitlines()) == 1, bad.describe()
