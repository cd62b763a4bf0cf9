"""The pytest plugin, used as a lab author would: from a test file outside this
repository, run by a separate pytest process. Outcomes are read from pytest's own
JUnit XML (parsed with the standard library, not nsbox), and the labs' effect is
observed with `ip netns list` while they are up (a test in the file records it)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds labs")]


TESTS = textwrap.dedent('''
    import json, os, subprocess
    from nsbox.model import Lab

    SEEN = os.environ["NSBOX_PLUGIN_SEEN"]


    def pair(lab: Lab, port: int = 7) -> None:
        """Two nodes on a veth; b echoes TCP on PORT and drops everything else in."""
        lab.require("veth")
        b = lab.node("b")
        lab.veth(lab.host, "eth0", b, "eth0")
        lab.host.address("eth0", "192.0.2.1/24")
        b.address("eth0", "192.0.2.2/24")
        b.serve("tcp", port)


    def record(lab):
        # what `ip netns list` shows while the lab is up, for the outer test to check
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        with open(SEEN, "a") as f:
            f.write(json.dumps({"lab": lab.name, "netns": lab.netns("host"), "listed": names}) + "\\n")


    def test_recipe_passes(nsbox_lab):
        lab = nsbox_lab("bridge-mode", containers=3)
        record(lab)
        lab.assert_reachable("c1", "c3")
        lab.assert_reachable("c1", "internet", "http", 80)
        lab.assert_reachable("internet", "c2", "tcp", 80, allow=False)
        assert "172.17.0.4/16" in lab.exec("c3", ["ip", "-br", "addr", "show", "eth0"]).stdout


    def test_inline_lab_passes(nsbox_lab):
        lab = nsbox_lab(pair, port=7007)
        record(lab)
        assert lab.probe("host", "b", "tcp", 7007)
        assert not lab.probe("host", "b", "tcp", 7008)
        lab.assert_reachable("b", "host")


    def test_wrong_expectation_fails(nsbox_lab):
        lab = nsbox_lab(pair)
        lab.assert_reachable("host", "b", "udp", 53, deadline=0.5)


    def test_missing_feature_skips(nsbox_lab):
        def needs_ipvlan(lab):
            lab.require("veth", "{lacking}")
            pair(lab)
        nsbox_lab(needs_ipvlan)
        raise AssertionError("not skipped")
''')


def _lacking_feature() -> str:
    """A link kind this kernel refuses, judged by `ip link add` in a throwaway netns."""
    for kind, cmd in (("ipvlan", "ip link add p0 type bridge && ip link add t0 link p0 type ipvlan mode l2"),
                      ("dummy", "ip link add t0 type dummy"), ("geneve", "ip link add t0 type geneve id 4 remote 192.0.2.9")):
        if subprocess.run(["unshare", "--net", "sh", "-c", cmd], capture_output=True).returncode != 0:
            return kind
    pytest.skip("this kernel has ipvlan, dummy and geneve; no feature to skip on")


def _entry_point_installed() -> bool:
    return any(ep.name == "nsbox" for ep in importlib.metadata.entry_points(group="pytest11"))


def _run_pytest(tmp_path: Path, env_extra: dict[str, str] | None = None,
                user: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Run the tests in tmp_path with a fresh pytest; test name -> (outcome, message)."""
    lacking = _lacking_feature()
    (tmp_path / "test_lab.py").write_text(TESTS.replace("{lacking}", lacking))
    junit = tmp_path / "junit.xml"
    # The installed entry point loads the plugin by itself; a checkout not installed names it.
    plugin = [] if _entry_point_installed() else ["-p", "nsbox.pytest_plugin"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSBOX_", "PYTEST_"))}
    env.update({"PYTHONPATH": str(REPO), "NSBOX_PLUGIN_SEEN": str(tmp_path / "seen.jsonl"), **(env_extra or {})})
    cp = subprocess.run([*(user or []), sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider",
                         "-q", "--rootdir", str(tmp_path), f"--junitxml={junit}", str(tmp_path / "test_lab.py")],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert junit.exists(), f"pytest did not run:\n{cp.stdout}\n{cp.stderr}"
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
        out[case.get("name")] = (outcome, message)
    return out


def test_plugin_from_a_test_file_outside_the_repo(tmp_path, kernel, host_unchanged) -> None:
    results = _run_pytest(tmp_path)
    assert results["test_recipe_passes"][0] == "passed", results
    assert results["test_inline_lab_passes"][0] == "passed", results
    outcome, message = results["test_wrong_expectation_fails"]
    assert outcome == "failure", results
    assert "udp host->b" in message and "expected allow, observed deny" in message, message
    outcome, message = results["test_missing_feature_skips"]
    assert outcome == "skipped" and "lacks" in message, results
    # While up, each lab was a set of named netns on the real host, visible to `ip netns list`...
    seen = [__import__("json").loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 2
    for s in seen:
        assert kernel.ONHOST_NETNS.match(s["netns"]), s
        assert s["netns"] in s["listed"].split(), s
    # ...and now every one of them is gone, with everything else the labs made.
    listed = kernel.netns_list()
    assert not [s["netns"] for s in seen if s["netns"] in listed]
    host_unchanged.assert_clean()


def test_plugin_skips_without_root(host_unchanged) -> None:
    """As uid 65534 every lab test is skipped with the reason, none fails or builds anything."""
    # pytest's tmp_path lives under a mode-700 folder of root's: uid 65534 needs one of its own
    where = Path(tempfile.mkdtemp(prefix="nsbox-plugin-", dir="/tmp"))
    try:
        os.chmod(where, 0o777)
        results = _run_pytest(where, user=["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"])
    finally:
        shutil.rmtree(where)
    assert {name: o for name, (o, _) in results.items()} == dict.fromkeys(results, "skipped"), results
    assert all("needs root" in m for _, m in results.values()), results
    host_unchanged.assert_clean()
