"""The host-network recipe (issue 16): a hostNetwork pod lives in its node's netns. Observed
from outside nsbox while the lab is up (--then, in the sandbox): `ip netns identify` of the
agent's listening process names node1's netns, `ss -Hltnp` in node1 shows that process on
:9100, `ip netns pids node1` holds the agent and a pause; no netns of the agent's own
exists. Every layout passes in the sandbox and --on-host."""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "ss")]

OBSERVE = ('echo "@@ ss"; ip netns exec node1 ss -Hltnp "sport = :9100"; '
           'echo "@@ identify"; for p in $(ip netns pids node1); do '
           'printf "%s %s %s\\n" "$p" "$(cat /proc/$p/comm)" "$(ip netns identify $p)"; done; '
           'echo "@@ netns"; ip netns list')


def _sections(text: str) -> dict[str, list[str]]:
    """The --then dump's `@@ NAME` parts as their non-blank lines."""
    return {k: [ln for ln in v.splitlines() if ln.strip()] for k, v in dump_sections(text).items()}


def test_the_agent_is_a_process_of_the_nodes_netns(nsbox):
    r = nsbox.run("run", "host-network", "--format", "json", "--then", OBSERVE, timeout=120)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.checks().values()), r.describe()
    d = _sections(r.stderr)
    [listener] = d["ss"]
    m = re.search(r'users:\(\("agent",pid=(\d+),', listener)
    assert m, listener
    procs = {int(line.split()[0]): line.split()[1:] for line in d["identify"]}
    # the listener is a process of node1's netns, and `ip netns identify` names node1
    assert procs[int(m.group(1))] == ["agent", "node1"], procs
    assert sorted(comm for comm, _ in procs.values()) == ["agent", "sleep"], procs  # sleep: "pause infinity"
    assert "agent" not in {line.split()[0] for line in d["netns"]}, d["netns"]


@pytest.mark.parametrize("cni", ["bridge", "ptp", "vxlan", "calico"])
@pytest.mark.parametrize("where", ["sandbox", "on-host"])
def test_host_network_passes_everywhere(nsbox, cni, where):
    args = ["run", "host-network", "--set", f"cni={cni}", "--format", "json"]
    r = nsbox.run(*args, *(["--on-host"] if where == "on-host" else []), timeout=120)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert len(checks) == 8 and all(c["passed"] for c in checks.values()), r.describe()
