"""Pods as on a real node (issue 16): the pod recipe's sandbox `web` is held by a `pause
infinity` process in its netns, and each of its containers (app, sidecar) serves from a
process of its own named after it. Observed from outside nsbox while the lab is up:
`ip netns pids`, /proc/PID/comm and /proc/PID/cmdline (what ps prints) and `ss -Hltnp` in
the pod's netns (the socket's owner process)."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "ss")]

PROCS = ('for ns in web client node1; do echo "@@ $ns"; for p in $(ip netns pids $ns); do '
         'printf "%s %s %s\\n" "$p" "$(cat /proc/$p/comm)" "$(tr "\\0" " " < /proc/$p/cmdline | sed "s/ *$//")"; '
         'done; done; echo "@@ ss"; ip netns exec web ss -Hltnp')


def _sections(text: str) -> dict[str, list[str]]:
    """The --then dump's `@@ NAME` parts as their non-blank lines."""
    return {k: [ln for ln in v.splitlines() if ln.strip()] for k, v in dump_sections(text).items()}


def test_a_pod_is_a_pause_process_and_one_process_per_container(nsbox):
    r = nsbox.run("run", "pod", "--format", "json", "--then", PROCS, timeout=120)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.checks().values()), r.describe()
    d = _sections(r.stderr)
    web = {line.split(" ", 2)[1]: (int(line.split()[0]), line.split(" ", 2)[2]) for line in d["web"]}
    # ip netns pids: the holder and the two containers, nothing else
    assert sorted(web) == ["app", "sidecar", "sleep"], d["web"]
    assert web["sleep"][1] == "pause infinity"
    assert web["app"][1] == "app" and web["sidecar"][1] == "sidecar", web
    # ss -p: each listener is its own container's process
    ss = "\n".join(d["ss"])
    assert re.search(rf':80 .*users:\(\("app",pid={web["app"][0]},', ss), ss
    assert re.search(rf':9090 .*users:\(\("sidecar",pid={web["sidecar"][0]},', ss), ss
    # a pod without containers: its own servers' process is named after the pod
    client = sorted(line.split(" ", 2)[1] for line in d["client"])
    assert client == ["client", "sleep"], d["client"]
    # a node is no sandbox: no pause there (and node1 serves nothing in this recipe)
    assert not any(" pause" in line for line in d["node1"]), d["node1"]
