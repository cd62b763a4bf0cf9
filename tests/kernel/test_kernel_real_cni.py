"""nsbox's CNI layouts against the REAL CNI plugins (containernetworking-plugins 1.1.1 as
Debian 12 ships them, /usr/lib/cni).

tests/support/realcni/real.sh runs the real `loopback`, `bridge`/`ptp` and `host-local` plugins for
two pods in a throwaway `unshare --net --mount --pid` node (nothing of the host is
touched; IPAM state in a temp dir); nsbox builds the same node from the same network
config with nsbox/kits/k8s/cni.py (tests/support/realcni/recipes.py). Both sides are dumped by
the same script (tests/support/realcni/dump.sh: ip -j -d link, ip -j addr, ip -j route,
iptables-save, the per-interface sysctls) and compared after normalising only what is
random (tests/support/realcni/compare.py: host veth names, MACs, ifindexes, counters).

- bridge (isGateway, ipMasq, hairpinMode) and ptp (ipMasq, mtu), each with portmap chained
  for pod1 (hostPort 8080 -> 80): no difference; the same traffic (pod1->pod2 and
  node->pod1 pings; the hostPort from pod2, from the node on its address and on 127.0.0.1,
  and from pod1 itself) passes on the real node (ping, curl) and as nsbox checks.
- Negative control: nsbox's bridge with hairpinMode off differs in exactly the two ports'
  hairpin flag -- the comparison sees a one-flag change -- and exactly one check fails:
  pod1 reaching itself through its hostPort (hairpin).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.realcni.compare import differences, snapshot
from tests.support.paths import SUPPORT

HERE = SUPPORT / "realcni"
CNI = Path("/usr/lib/cni")
PLUGINS = ("bridge", "ptp", "host-local", "loopback", "portmap")
PODS = ["pod1", "pod2"]

missing = [p for p in PLUGINS if not (CNI / p).exists()]
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.skipif(bool(missing), reason=f"the real CNI plugins are missing ({', '.join(missing)} "
                                                       f"in {CNI}): apt-get install containernetworking-plugins"),
              pytest.mark.tools("ip", "iptables-save", "unshare", "nsenter", "ping", "curl", "busybox")]


def _real(scenario: str, out: Path) -> None:
    out.mkdir()
    cp = subprocess.run(["bash", str(HERE / "real.sh"), scenario, str(out)], capture_output=True, text=True,
                        timeout=60, start_new_session=True)
    assert cp.returncode == 0, cp.stderr


def _nsbox(nsbox, scenario: str, out: Path, *sets: str, rc: int = 0):
    out.mkdir()
    args = [a for s in sets for a in ("--set", s)]
    if rc:
        args += ["--settle", "0.5"]  # a failure is the point: no long re-probing
    r = nsbox.run("run", f"realcni-{scenario}", "--recipes", str(HERE), *args, "--format", "json",
                  "--then", f"bash {HERE / 'nsbox_dump.sh'} {out} node {' '.join(PODS)}", timeout=120)
    assert r.returncode == rc, r.describe()
    return r


@pytest.mark.parametrize("scenario", ["bridge", "ptp"])
def test_same_as_the_real_plugins(nsbox, tmp_path: Path, scenario: str) -> None:
    _real(scenario, tmp_path / "real")
    r = _nsbox(nsbox, scenario, tmp_path / "nsbox")
    real, ours = snapshot(tmp_path / "real", PODS), snapshot(tmp_path / "nsbox", PODS)
    assert differences(real, ours) == []
    # Not two empty dumps: the layout is there on both sides.
    assert len(real["node"]["iptables"]) >= 10 and any("MASQUERADE" in ln for ln in real["node"]["iptables"])
    assert {"veth@pod1", "veth@pod2"} <= set(real["node"]["links"])
    reach = (tmp_path / "real" / "reach").read_text().splitlines()
    assert reach == ["pod1->pod2 ok", "node->pod1 ok"] + [
        f"hostport {p} hello-from-pod1" for p in ("pod2->192.168.70.2", "node->192.168.70.2", "node->127.0.0.1",
                                                  "pod1->192.168.70.2")], reach
    # nsbox's checks of the same traffic pass on nsbox's side, hostPort answered by pod1.
    assert all(c["passed"] for c in r.checks().values()) and len(r.checks()) == 6, r.describe()


def test_a_one_flag_change_is_seen(nsbox, tmp_path: Path) -> None:
    _real("bridge", tmp_path / "real")
    r = _nsbox(nsbox, "bridge", tmp_path / "nsbox", "hairpin=false", rc=1)
    diff = differences(snapshot(tmp_path / "real", PODS), snapshot(tmp_path / "nsbox", PODS))
    assert len(diff) == 2 and all(d.startswith("node links veth@pod") and "'hairpin': False" in d
                                  for d in diff), diff
    # And the traffic says so: pod1 no longer reaches itself through its hostPort.
    assert {n for n, c in r.checks().items() if not c["passed"]} == {"http pod1->192.168.70.2:8080 (hostPort)"}
