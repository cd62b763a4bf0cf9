"""The kernel side of the NetworkPolicy tests: one kube-router node with the e2e model's
nine pods, loading a rendered sync into it, and probing every ordered pod pair."""

from __future__ import annotations

import os
import socket
from typing import Iterator

from nsbox.kits.netpol import PODS
from nsbox.kits.netpol.kuberouter import IPSET_RESTORE, Rendered, kube_router_node, node_of  # noqa: F401 (re-exported for the tests)

EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
PROBE_TIMEOUT = 1.0  # kube-router REJECTs: a denied probe is refused at once, not timed out


def _sctp_reason() -> str | None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError as e:
        return f"this kernel has no SCTP sockets ({e.strerror}): SCTP probes cannot be sent"
    return "SCTP servers are not part of nsbox's probe kinds yet"


SCTP_SKIP = _sctp_reason()


def run_in_node(h, argv: list[str], stdin: str | None = None) -> str:
    path = h.built.path("node")
    if not os.path.exists(path):  # seen on the shared test host: another run's cleanup took it
        raise AssertionError(f"the lab's node namespace {path} is gone: another process removed it "
                             "(a concurrent test's leak cleanup on a shared host?); rerun")
    r = h.exec("node", argv, input=stdin)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr.strip()}"
    return r.stdout


def sync(h, rendered: Rendered) -> None:
    """Load one full sync into the node. kube-router swaps sets in place; between test cases
    the old chains and sets are cleared first so nothing of the previous case survives."""
    run_in_node(h, ["iptables-restore"], EMPTY_FILTER)
    run_in_node(h, ["ipset", "destroy"])  # every set of the lab's own node netns
    run_in_node(h, list(IPSET_RESTORE), rendered.ipset_restore())
    run_in_node(h, ["iptables-restore"], rendered.filter_restore())
    run_in_node(h, ["conntrack", "-F"])  # a reused UDP 5-tuple must not ride an old ESTABLISHED entry


def observe(h, port: int, protocol: str) -> dict[tuple[str, str], bool]:
    proto = protocol.lower()
    return {(s, d): h.probe(node_of(s), node_of(d), proto, port) for s in PODS for d in PODS if s != d}


def lab_up() -> Iterator:
    """A module fixture's body: the node built once, torn down after the module."""
    from nsbox.pytest_plugin import build_lab, up
    handle = up(build_lab(kube_router_node, {}), timeout=PROBE_TIMEOUT)
    try:
        yield handle
    finally:
        problems = handle.down()
        assert not problems, problems
