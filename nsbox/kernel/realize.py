"""Build a validated Lab in the kernel, recording each namespace in a journal.

Every node, the host included, is its own named netns. Links, addresses, routes,
sysctls and rules live inside those namespaces, so removing the namespaces
removes the lab: teardown follows the journal and touches nothing else.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable
from dataclasses import dataclass, field

from nsbox.errors import KernelError
from nsbox.host import netns, onhost, rtnl
from nsbox.host.journal import Journal
from nsbox.host.programs import resolve_flavour
from nsbox.kernel import dad, firewall, links, sysctl
from nsbox.model import Lab
from nsbox.plan import Firewall, IPSets, Netlink, Netns, Plan, Step, Sysctl, plan_lab

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
    def __init__(self, total: int = 0, progress: Callable[[str], None] | None = None) -> None:
        self.left = fault_limit()
        self.total, self.done = total, 0
        self.progress = progress  # told "step I of N" at most once a second (a long build)
        self._said = time.monotonic()

    def tick(self, step: Step) -> None:
        self.done += 1
        if self.progress is not None and time.monotonic() - self._said >= 1.0:
            self._said = time.monotonic()
            self.progress(f"building: step {self.done} of {self.total}")
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                what = f"{step.node}: {step.text.splitlines()[0]}"
                raise KernelError(f"injected fault before {what} ({FAULT_ENV})")


def fault_limit() -> int | None:
    """NSBOX_FAULT_AFTER_STEPS: a count of steps (digits), or unset."""
    limit = os.environ.get(FAULT_ENV, "")
    if not limit:
        return None
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 9):
        from nsbox.errors import UsageError
        raise UsageError(f"{FAULT_ENV}={limit!r}: expected a number of steps (digits 0-9)")
    return int(limit)


def realize(lab: Lab, prefix: str = "", journal_path: str | None = None, iptables_flavour: str = "auto",
            progress: Callable[[str], None] | None = None,
            namespaces_made: Callable[[Realized], None] | None = None) -> Realized:
    """Build LAB. Node N becomes netns PREFIX+N. On any error, undo and re-raise.
    PROGRESS, if given, hears how far a long build is (nsbox/progress.py).
    NAMESPACES_MADE, if given, runs once every namespace exists and before anything else
    is built in them (a live lab's part moves its underlay links in: nsbox/live/parts.py)."""
    plan = plan_lab(lab)
    steps = _Steps(len(plan.steps), progress)
    if journal_path:  # the real host's /run/netns, shared with iproute2 and other labs
        done = Realized(lab, onhost.start(journal_path))
    else:  # a sandbox's private /run
        os.makedirs(netns.NETNS_RUN_DIR, mode=0o755, exist_ok=True)
        done = Realized(lab, Journal())
    done.iptables = resolve_flavour(iptables_flavour)
    try:
        if namespaces_made is None:
            apply_plan(plan, done, prefix, steps)
        else:
            first = next((i for i, s in enumerate(plan.steps) if not isinstance(s.action, Netns)), len(plan.steps))
            apply_plan(Plan(lab, plan.steps[:first]), done, prefix, steps)
            namespaces_made(done)
            apply_plan(Plan(lab, plan.steps[first:]), done, prefix, steps)
        for node in lab.nodes.values():
            # Addresses the recipe wants DAD on are unusable until it ends: wait, so the
            # verifier's first probe does not meet a tentative address.
            waiting = {a.ip for a in node.addresses if a.dad and ":" in a.cidr}
            if waiting:
                dad.wait(done.path(node.name), node.name, waiting)
    except BaseException:
        done.teardown()
        raise
    return done


def apply_plan(plan: Plan, done: Realized, prefix: str, steps: _Steps) -> None:
    """Apply PLAN's steps in order. Consecutive netlink steps of one node share one
    batched rtnetlink socket (host/rtnl.py): they go out together, and an error
    names the step the kernel refused by its `ip` text."""
    fds: dict[str, int] = {}
    session: _Session | None = None
    loading = _Loading()
    early = _early_firewalls(plan)
    hoisted = {plan.steps[j].node for j in early}
    try:
        for i, step in enumerate(plan.steps):
            a = step.action
            if session is not None and (not isinstance(a, Netlink) or session.node != step.node):
                session.close()
                session = None
            if early and not isinstance(a, Netns):  # every namespace exists: those rules can go in now
                for j in sorted(early):
                    loading.start(plan.steps[j].node, done.path(plan.steps[j].node),
                                  plan.steps[j].action.firewall, done.iptables)
                early = set()
            if step.node not in hoisted:
                loading.wait(step.node)  # a node's steps stay in order: its rules first
            steps.tick(step)
            if isinstance(a, Firewall) and step.node in hoisted:
                continue  # loading since the namespaces were made
            if isinstance(a, Netns):
                # Recorded by create itself, only once the name is provably this lab's:
                # a name that exists already is an error, and teardown leaves it alone.
                done.paths[step.node] = netns.create(prefix + step.node, done.journal.record_pin)
            elif isinstance(a, Netlink):
                if session is None:
                    session = _Session(step.node, done, fds, plan, i)
                session.send(step, a)
            elif isinstance(a, Sysctl):
                with netns.entered(done.path(step.node)):
                    sysctl.write(step.node, a.key, a.value, optional=a.optional)
            elif isinstance(a, IPSets):
                from nsbox.kernel import ipset

                with netns.entered(done.path(step.node)):
                    ipset.apply(step.node, list(a.sets))
            elif isinstance(a, Firewall):
                loading.start(step.node, done.path(step.node), a.firewall, done.iptables)
        if session is not None:
            session.close()
            session = None
        loading.wait()
    finally:
        loading.wait(raising=False)
        if session is not None:
            session.nl.nl.close()
        for fd in fds.values():
            os.close(fd)


def _early_firewalls(plan: Plan) -> set[int]:
    """The Firewall steps that can start as soon as every namespace exists, while the
    links are made: iptables/ip6tables rules name interfaces by name, so they load
    before the interfaces exist (an nft ruleset's `iif` needs the interface: not those;
    nor a node whose ipsets the rules match, nor one with two firewall steps)."""
    count: dict[str, int] = {}
    for s in plan.steps:
        if isinstance(s.action, (Firewall, IPSets)):
            count[s.node] = count.get(s.node, 0) + 1
    return {i for i, s in enumerate(plan.steps)
            if isinstance(s.action, Firewall) and not s.action.firewall.nft and count[s.node] == 1}


class _Loading:
    """Firewalls being loaded, one thread per node, while the plan goes on with other nodes.

    An iptables-nft restore is mostly the kernel waiting for RCU grace periods (~12 ms
    per table it commits), not CPU: nodes' restores side by side overlap those waits.
    Each thread enters its node's netns (setns is per thread) and loads that node's kinds
    in order, as firewall.apply always does. A node's next step waits for its thread."""

    def __init__(self) -> None:
        self._threads: dict[str, tuple[threading.Thread, list[BaseException]]] = {}

    def start(self, node: str, path: str, fw, flavour: str) -> None:
        self.wait(node)
        errors: list[BaseException] = []

        def load() -> None:
            try:
                with netns.entered(path):
                    firewall.apply(node, fw, flavour)
            except BaseException as e:  # noqa: BLE001 - raised again by wait(), in the caller's thread
                errors.append(e)

        t = threading.Thread(target=load, name=f"nsbox-firewall-{node}", daemon=True)
        t.start()
        self._threads[node] = (t, errors)

    def wait(self, node: str | None = None, raising: bool = True) -> None:
        """Until NODE's (every node's) firewall is in; its error is raised here."""
        names = [node] if node is not None else list(self._threads)
        first: BaseException | None = None
        for name in names:
            if name not in self._threads:
                continue
            t, errors = self._threads.pop(name)
            t.join()
            if errors and first is None:
                first = errors[0]
        if first is not None and raising:
            raise first


class _Session:
    """A run of netlink steps in one node: one socket, ifindexes looked up in batches."""

    def __init__(self, node: str, done: Realized, fds: dict[str, int], plan: Plan, first: int) -> None:
        self.node = node
        self.done = done
        self.fds = fds
        self.nl = links.NodeLinks(node, rtnl.Rtnl(node, done.path(node)))
        # Interfaces this run needs but does not create exist already: look them
        # all up in one round trip rather than one at a time.
        created: set[str] = set()
        wanted: list[str] = []
        for step in plan.steps[first:]:
            if step.node != node or not isinstance(step.action, Netlink):
                break
            wanted += [n for n in step.action.needs if n not in created and n not in wanted]
            created.update(step.action.creates)
        self.nl.resolve(wanted)

    def index(self, ifname: str) -> int:
        return self.nl.index(ifname)

    def netns_fd(self, node: str) -> int:
        if node not in self.fds:
            self.fds[node] = os.open(self.done.path(node), os.O_RDONLY)
        return self.fds[node]

    def send(self, step: Step, a: Netlink) -> None:
        self.nl.nl.queue(step.text if "\n" not in step.text else step.text.replace("\n", "; "), a.encode(self), a.msg_type, a.flags)

    def close(self) -> None:
        try:
            self.nl.nl.flush()
        finally:
            self.nl.nl.close()
