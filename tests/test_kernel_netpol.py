"""NetworkPolicy on the real kernel, as kube-router enforces it: one node (kube-bridge,
br_netfilter on) holding the e2e's nine pods x/y/z × a/b/c, each serving tcp and udp on 80
and 81. For every reference case, step by step, the kube-router renderer's ipsets and filter
table are loaded into the node (ipset restore, iptables-restore), conntrack is flushed, and
all 72 ordered pod pairs are probed with real connections to the pod IPs. The observed table
must equal the case's expected e2e table AND the simulator's table (written independently,
from the API semantics). Mutations: without a pod's REJECT rule, or without the ipset's
`nomatch` entry of an ipBlock except, a denied pair connects.

The lab is built once for the module (about 2 s) and the rules are swapped between cases.
SCTP probes are skipped where the kernel has no SCTP sockets (the pods could not serve it).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, NEEDS_ROOT
from nsbox.kits.netpol import PODS, Scenario, load_cases, render_tables, tables, truth_table
from nsbox.kits.netpol.cases import pod_ip
from nsbox.kits.netpol.kuberouter import Rendered, pod_chain, render

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ipset", "iptables-restore", "iptables-save", "conntrack")]

CASES = load_cases(Path(__file__).resolve().parent / "data" / "netpol" / "cases.json")
BY_ID = {c.id: c for c in CASES}
EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
PROBE_TIMEOUT = 1.0  # kube-router REJECTs: a denied probe is refused at once, not timed out


def node_of(key: str) -> str:
    return key.replace("/", "-")


def kube_router_node(lab) -> None:
    """One kube-router node: kube-bridge (10.0.0.254/16) and the e2e model's nine pods."""
    lab.require("veth", "bridge", "conntrack")
    node = lab.node("node")
    node.bridge("kube-bridge", "10.0.0.254/16")
    # kube-router needs bridged pod-to-pod traffic to traverse FORWARD (physdev-is-bridged).
    node.sysctl("net.bridge.bridge-nf-call-iptables", 1)
    # A client denied by egress policy gets the node's REJECT (ICMP port unreachable) for each
    # of its 8 probes within milliseconds; the kernel's per-destination ICMP rate limit (a
    # burst of 6, then 1/s) would turn the 7th into a 1 s timeout. Probes, not policy, differ.
    node.sysctl("net.ipv4.icmp_ratelimit", 0)
    for key in PODS:
        pod = lab.node(node_of(key))
        lab.veth(pod, "eth0", node, f"v-{node_of(key)}", b_master="kube-bridge")
        pod.address("eth0", f"{pod_ip(key)}/16")
        for port in (80, 81):
            pod.serve("tcp", port)
            pod.serve("udp", port)


def _sctp_reason() -> str | None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError as e:
        return f"this kernel has no SCTP sockets ({e.strerror}): SCTP probes cannot be sent"
    return "SCTP servers are not part of nsbox's probe kinds yet"


SCTP_SKIP = _sctp_reason()


@pytest.fixture(scope="module")
def node():
    from nsbox.pytest_plugin import build_lab, up
    handle = up(build_lab(kube_router_node, {}), timeout=PROBE_TIMEOUT)
    try:
        yield handle
    finally:
        problems = handle.down()
        assert not problems, problems


def _run(h, argv: list[str], stdin: str | None = None) -> str:
    r = h.exec("node", argv, input=stdin)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr.strip()}"
    return r.stdout


def sync(h, rendered: Rendered) -> None:
    """Load one full sync into the node. kube-router swaps sets in place; between test cases
    the old chains and sets are cleared first so nothing of the previous case survives."""
    _run(h, ["iptables-restore"], EMPTY_FILTER)
    _run(h, ["ipset", "destroy"])  # every set of the lab's own node netns
    _run(h, ["ipset", "restore"], rendered.ipset_restore())
    _run(h, ["iptables-restore"], rendered.filter_restore())
    _run(h, ["conntrack", "-F"])  # a reused UDP 5-tuple must not ride an old ESTABLISHED entry


def observe(h, port: int, protocol: str) -> dict[tuple[str, str], bool]:
    proto = protocol.lower()
    return {(s, d): h.probe(node_of(s), node_of(d), proto, port) for s in PODS for d in PODS if s != d}


def check_case(h, case_id: str) -> list[str]:
    """Replay CASE_ID; returns the printed tables and the failures."""
    scenario = Scenario(BY_ID[case_id])
    out, failures, skipped = [], [], []
    for step in scenario.steps():
        sync(h, render(scenario.cluster, version=str(step.index)))
        for probe in step.probes:
            label = f"{case_id} step {step.index} {probe.port}/{probe.protocol}"
            if probe.protocol == "SCTP":
                skipped.append(f"{label}: {SCTP_SKIP}")
                continue
            observed = observe(h, probe.port, probe.protocol)
            simulated = truth_table(scenario.cluster, list(PODS), probe.port, probe.protocol)
            vs_expected = tables(f"{label} (e2e expected vs kernel)", list(PODS), probe.expected, observed)
            vs_sim = tables(f"{label} (simulator vs kernel)", list(PODS), simulated, observed)
            out += [render_tables(vs_expected), render_tables(vs_sim)]
            if vs_expected["incorrect"] or vs_sim["incorrect"]:
                failures.append(label)
    print("\n".join(out + skipped))
    if skipped and not out:
        pytest.skip("; ".join(skipped))
    return failures


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_case_on_the_kernel(node, case_id):
    failures = check_case(node, case_id)
    assert not failures, f"kernel table differs in: {', '.join(failures)} (tables above)"


def _rendered(case_id: str) -> tuple[Scenario, Rendered]:
    scenario = Scenario(BY_ID[case_id])
    for _ in scenario.steps():
        pass
    return scenario, render(scenario.cluster)


def test_layout_is_kube_routers_and_the_reject_counts(node):
    """iptables-save and ipset list (not the renderer) show the chains and sets; a denied
    probe raises the packet counter of the target pod's REJECT rule."""
    scenario, r = _rendered("allow-from-podselector-same-ns")
    sync(node, r)
    saved = _run(node, ["iptables-save", "-t", "filter"])
    assert saved.count(":KUBE-POD-FW-") == 9 and ":KUBE-NWPLCY-DEFAULT" in saved
    assert "-A FORWARD -m comment --comment \"kube-router netpol - " in saved
    assert "-m physdev --physdev-is-bridged" in saved
    sets = _run(node, ["ipset", "list", "-n"]).split()
    assert any(s.startswith("KUBE-SRC-") for s in sets) and any(s.startswith("KUBE-DST-") for s in sets)
    assert not node.probe("x-c", "x-a", "tcp", 80)
    assert node.probe("x-b", "x-a", "tcp", 80)
    fw = pod_chain(scenario.cluster.pods["x/a"], "1")
    counted = [ln for ln in _run(node, ["iptables-save", "-c", "-t", "filter"]).splitlines()
               if f"-A {fw} " in ln and "-j REJECT" in ln]
    assert counted and not counted[0].startswith("[0:"), counted


def test_mutation_without_the_reject_rule_a_deny_connects(node):
    _, r = _rendered("default-deny-ingress")
    sync(node, r)
    assert not node.probe("y-b", "x-a", "tcp", 80)
    r.rules = [ln for ln in r.rules if '"x/a reject"' not in ln]
    sync(node, r)
    assert node.probe("y-b", "x-a", "tcp", 80)
    assert not node.probe("y-b", "x-b", "tcp", 80)  # x/b keeps its REJECT


def test_mutation_without_the_except_nomatch_entry_a_deny_connects(node):
    _, r = _rendered("egress-cidr-except")
    sync(node, r)
    assert not node.probe("x-a", "x-b", "tcp", 80)
    assert node.probe("x-a", "x-c", "tcp", 80)
    hit = 0
    for s in r.ipsets.values():
        kept = [e for e in s.entries if e != f"{pod_ip('x/b')}/32 nomatch"]
        hit += len(s.entries) - len(kept)
        s.entries = kept
    assert hit == 1
    sync(node, r)
    assert node.probe("x-a", "x-b", "tcp", 80)


def test_rules_are_swapped_fast_enough():
    """Not a kernel check: rendering all 65 probes' policies stays cheap (the kernel test's budget)."""
    start = time.monotonic()
    for c in CASES:
        _rendered(c.id)
    assert time.monotonic() - start < 2.0
