"""`nsbox run --artifacts DIR --node-state` (issue 16): every machine of a lab (each
Kubernetes node) leaves its state as its own tools print it there -- ip route, ip neigh,
bridge fdb, iptables-save, ipset list -- pass or fail, read from the kernel while the lab
is live. Judged against the same tools run by --then in the live lab (an observer
independent of nsbox's dump code), and against what a flannel / Calico node shows."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "bridge", "iptables-save")]

THEN = ('for n in node1 node2; do ns=$(eval echo \\$NSBOX_NETNS_$(echo $n | tr a-z A-Z)); '
        'ip -n $ns route show > "$OUT/$n.route"; bridge -n $ns fdb show > "$OUT/$n.fdb"; '
        'ip netns exec $ns iptables-save | grep -v "^#" > "$OUT/$n.save"; done')


def _uncounted(save: str) -> list[str]:
    """iptables-save without its comments and chain counters (they move between two reads)."""
    return [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in save.splitlines() if not ln.startswith("#")]


def _run(nsbox, tmp_path, cni: str):
    art = tmp_path / "art"
    r = nsbox.run("run", "pod-to-pod", "--set", f"cni={cni}", "--format", "json", "--artifacts", str(art),
                  "--node-state", "--then", THEN, env={"OUT": str(tmp_path)}, timeout=180)
    assert r.returncode == 0, r.describe()
    return r, art / "pod-to-pod"


def test_flannel_nodes_leave_their_state(nsbox, tmp_path):
    r, folder = _run(nsbox, tmp_path, "vxlan")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["checks"] == [] and set(summary["machines"]) == {"node1", "node2", "outside"}
    for n, peer_ip, peer_vtep in (("node1", "192.168.70.12", "10.244.2.0"), ("node2", "192.168.70.11", "10.244.1.0")):
        d = folder / n
        route = (d / "ip-route.txt").read_text()
        # the kernel's own words: the connected routes it made (proto kernel), flannel's onlink route
        assert (tmp_path / f"{n}.route").read_text() == route
        assert re.search(r"^10\.244\.\d\.0/24 dev cni0 proto kernel scope link src 10\.244\.\d\.1 *$", route, re.M)
        assert re.search(rf"^10\.244\.\d\.0/24 via {re.escape(peer_vtep)} dev flannel\.1 onlink *$", route, re.M)
        fdb = (d / "bridge-fdb.txt").read_text()
        assert re.search(rf"^\S+ dev flannel\.1 dst {re.escape(peer_ip)} self permanent *$", fdb, re.M), fdb
        neigh = (d / "ip-neigh.txt").read_text()
        assert re.search(rf"^{re.escape(peer_vtep)} dev flannel\.1 lladdr \S+ PERMANENT *$", neigh, re.M), neigh
        save = _uncounted((d / "iptables-save.txt").read_text())
        assert save == _uncounted((tmp_path / f"{n}.save").read_text())
        assert ":FLANNEL-POSTRTG -" in save and any("-j KUBE-SERVICES" in ln for ln in save)
    assert "every check passed" in (folder / "README.txt").read_text()


def test_calico_nodes_show_felix_sets(nsbox, tmp_path):
    r, folder = _run(nsbox, tmp_path, "calico")
    ipset = (folder / "node1" / "ipset.txt").read_text()
    assert "Name: cali40masq-ipam-pools" in ipset and "10.244.0.0/16" in ipset, ipset
    route = (folder / "node1" / "ip-route.txt").read_text()
    assert route == (tmp_path / "node1.route").read_text()
    assert re.search(r"^blackhole 10\.244\.1\.0/24 proto bird *$", route, re.M), route
    assert re.search(r"^10\.244\.1\.2 dev cali\w{11} scope link *$", route, re.M), route


def test_node_state_needs_artifacts(nsbox):
    r = nsbox.run("run", "pod-to-pod", "--node-state", timeout=60)
    assert r.returncode == 2 and "--node-state" in r.stderr, r.describe()
