"""Build a validated Lab in the kernel, recording each namespace in a journal.

Every node, the host included, is its own named netns. Links, addresses, routes,
sysctls and rules live inside those namespaces, so removing the namespaces
removes the lab: teardown follows the journal and touches nothing else.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from nsbox.errors import KernelError
from nsbox.kernel import iptables, links, netns, nftables, onhost, sysctl
from nsbox.kernel.journal import Journal
from nsbox.model import Lab, Node

# Testing hook: fail after this many kernel steps, to prove teardown after a
# failure in the middle of a build leaves nothing behind.
FAULT_ENV = "NSBOX_FAULT_AFTER_STEPS"


@dataclass
class Realized:
    lab: Lab
    journal: Journal
    paths: dict[str, str] = field(default_factory=dict)  # node -> /run/netns/...
    iptables: str = "legacy"  # the flavour the rules went to: nft or legacy

    def path(self, node: str) -> str:
        return self.paths[node]

    def netns_names(self) -> dict[str, str]:
        return {n: os.path.basename(p) for n, p in self.paths.items()}

    def teardown(self) -> list[str]:
        """Remove what was built. Returns problems (empty when clean)."""
        problems = onhost.finish(self.journal) if self.journal.path else self.journal.undo()
        self.paths.clear()
        return problems


class _Steps:
    def __init__(self) -> None:
        limit = os.environ.get(FAULT_ENV)
        self.left = int(limit) if limit else None

    def tick(self, what: str) -> None:
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                raise KernelError(f"injected fault before {what} ({FAULT_ENV})")


def realize(lab: Lab, prefix: str = "", journal_path: str | None = None, iptables_flavour: str = "auto") -> Realized:
    """Build LAB. Node N becomes netns PREFIX+N. On any error, undo and re-raise."""
    steps = _Steps()
    if journal_path:  # the real host's /run/netns, shared with iproute2 and other labs
        done = Realized(lab, onhost.start(journal_path))
    else:  # a sandbox's private /run
        os.makedirs(netns.NETNS_RUN_DIR, mode=0o755, exist_ok=True)
        done = Realized(lab, Journal())
    done.iptables = iptables.resolve_flavour(iptables_flavour)
    try:
        for node in lab.nodes.values():
            steps.tick(f"netns {node.name}")
            # Recorded by create itself, only once the name is provably this lab's:
            # a name that exists already is an error, and teardown leaves it alone.
            done.paths[node.name] = netns.create(prefix + node.name, done.journal.record_pin)
        _create_links(lab, done, steps)
        created_up: dict[str, set[str]] = defaultdict(set)
        for pair in lab.veths:
            created_up[pair.b_node].add(pair.b_name)
        for node in lab.nodes.values():
            _configure(node, done.path(node.name), created_up[node.name], steps, done.iptables)
    except BaseException:
        done.teardown()
        raise
    return done


def _create_links(lab: Lab, done: Realized, steps: _Steps) -> None:
    # A veth pair is created from its b side (where the bridge usually is), the
    # peer going straight into the a namespace: one request per pair.
    by_b = defaultdict(list)
    for pair in lab.veths:
        by_b[pair.b_node].append(pair)
    fds: dict[str, int] = {}
    try:
        for node in lab.nodes.values():
            bridges = [i for i in node.interfaces.values() if i.kind == "bridge"]
            if not bridges and not by_b[node.name]:
                continue
            with links.in_node(node.name, done.path(node.name)) as nl:
                for br in bridges:
                    steps.tick(f"bridge {br.name}")
                    nl.add_bridge(br.name, br.mtu)
                for pair in by_b[node.name]:
                    steps.tick(f"veth {pair.b_name}")
                    if pair.a_node not in fds:
                        fds[pair.a_node] = os.open(done.path(pair.a_node), os.O_RDONLY)
                    b = node.interfaces[pair.b_name]
                    nl.add_veth(pair.b_name, pair.a_name, fds[pair.a_node], pair.a_node, b.master, b.mtu)
    finally:
        for fd in fds.values():
            os.close(fd)


def _configure(node: Node, path: str, created_up: set[str], steps: _Steps, flavour: str) -> None:
    # Sysctls first: some must be set before an interface comes up (disable_ipv6).
    if node.sysctls:
        with netns.entered(path):
            for key, value in node.sysctls.items():
                steps.tick(f"{node.name} sysctl {key}")
                sysctl.write(node.name, key, value, optional=key in node.optional_sysctls)
    with links.in_node(node.name, path) as nl:
        nl.resolve([name for name in node.interfaces if name not in created_up])
        for iface in node.interfaces.values():
            if iface.name not in created_up:
                steps.tick(f"{node.name} {iface.name} up")
                nl.up(iface.name)
        for a in node.addresses:
            steps.tick(f"{node.name} address {a.cidr}")
            nl.add_address(a.iface, a.cidr)
        for r in node.routes:
            steps.tick(f"{node.name} route {r.dst}")
            nl.add_route(r.dst, r.via, r.dev)
    if node.firewall.used_tables(4) or node.firewall.used_tables(6):
        with netns.entered(path):
            steps.tick(f"{node.name} iptables")
            iptables.apply(node.name, node.firewall, flavour)
    if node.firewall.nft:
        with netns.entered(path):
            steps.tick(f"{node.name} nftables")
            nftables.apply(node.name, node.firewall.nft)
