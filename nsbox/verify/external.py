"""Run a Lab's checks against namespaces nsbox did not build.

A differential test builds the same thing twice: once with nsbox, once with the
real software (the real dockerd, the real CNI plugins). To judge the real one by
the same rules, this module takes the Lab's checks and `{node: netns path}` for
the real namespaces (e.g. /proc/<pid>/ns/net of a container's init), starts the
Lab's servers inside them (in nsbox's server process; the netns is the real
system's), and runs the very verify() of a normal run, through the one LabSession
(nsbox/session.py) every front end uses. Nothing is created in the
kernel but those listening sockets, and nothing is torn down but them.

A `dropped_by` check reads the packet counters of the rule it names. In a netns
nsbox did not build, the rules are the real system's: pass their `iptables-save`
text as `rules={node: text}` and the check must name one of THOSE rules; a rule
that is not there is refused before any probe is sent.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass

from nsbox.errors import UsageError, ValidationError
from nsbox.kinds.checks import kind_of
from nsbox.model import Check, Lab, save
from nsbox.model.firewall import BUILTIN_CHAINS, Firewall
from nsbox.verify.results import CheckResult
from nsbox.verify.verifier import Timing


@dataclass
class ExternalLab:
    """What the verifier needs of a built lab (`lab`, `path(node)`, `iptables`), for
    namespaces someone else built."""

    lab: Lab
    paths: dict[str, str]
    iptables: str = "nft"  # the backend the real system's rules are in (Debian 12: nft)

    def path(self, node: str) -> str:
        try:
            return self.paths[node]
        except KeyError:
            raise UsageError(f"no netns path given for node {node!r}") from None


def firewall_from_save(text: str) -> Firewall:
    """`iptables-save` (or `-c`) TEXT as nsbox's Firewall model, so that a check's
    `dropped_by` can name a real rule and drop_counters() can find it."""
    fw = Firewall()
    try:
        for ln in save.lines(text, strict=True):
            try:
                table = fw.table(ln.table)
                if ln.kind == "chain":
                    if ln.chain in BUILTIN_CHAINS[table.name]:
                        if ln.policy == "DROP":
                            table.policy(ln.chain, "DROP")
                    else:
                        table.new_chain(ln.chain)
                elif ln.kind == "rule":
                    table.append(ln.chain, ln.spec)
                elif ln.kind == "delete":
                    raise ValidationError("not a table, chain or -A line")
            except ValidationError as e:
                raise UsageError(f"iptables-save line {ln.n}: {e}: {ln.raw!r}") from None
    except save.SaveSyntaxError as e:
        raise UsageError(f"iptables-save line {e.n}: {e.why}: {e.raw!r}") from None
    return fw


def nodes_named(lab: Lab, checks: list[Check]) -> set[str]:
    """The nodes (netns) whose path a run of CHECKS needs, as each check's kind names them:
    where probes leave from, whom they target, whose conntrack, links or rule counters are read."""
    out: set[str] = set()
    for c in checks:
        out |= kind_of(c).nodes(lab, c)
    return out


def select(lab: Lab, names: list[str]) -> Lab:
    """A copy of LAB with only the checks called NAMES (a conntrack check keeps the reach
    check it reads); the model itself is untouched."""
    have = {c.name: c for c in lab.checks}
    unknown = [n for n in names if n not in have]
    if unknown:
        raise UsageError(f"lab {lab.name} has no check {unknown[0]!r}")
    keep = set(names) | {r for n in names for r in kind_of(have[n]).reads(have[n])}
    out = copy.deepcopy(lab)
    out.checks = [c for c in out.checks if c.name in keep]
    out.matrices = [m for m in out.matrices if all(m.cell_name(a, b) in keep for a, b, _ in m.cells)]
    return out


def prepare(lab: Lab, paths: dict[str, str], iptables: str = "nft",
            rules: dict[str, str] | None = None) -> ExternalLab:
    """Check that PATHS cover the nodes the checks need and that the lab's addresses are
    really there; put the real rules in place of the model's. Bad input: UsageError."""
    needed = nodes_named(lab, lab.checks)
    missing = sorted(needed - set(paths))
    if missing:
        raise UsageError(f"no netns path for node{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                         f"which the checks use")
    _check_shared(lab, paths)
    lab = copy.deepcopy(lab)
    # Only the given namespaces serve: a node nobody mapped is not part of the real system.
    for name, node in lab.nodes.items():
        if name not in paths:
            node.servers = []
    for node, text in (rules or {}).items():
        lab.nodes[node].firewall = firewall_from_save(text)
    built = ExternalLab(lab, dict(paths), iptables)
    for c in lab.checks:
        kind_of(c).prepare_external(built, c, rules or {})
    return built


def _check_shared(lab: Lab, paths: dict[str, str]) -> None:
    """A container the model puts in another's netns (`--network container:`, a pod's
    second container) must be in that very netns in the real system, if it is given."""
    for c in lab.containers.values():
        if c.name in paths and c.node in paths:
            if os.stat(paths[c.name]).st_ino != os.stat(paths[c.node]).st_ino:
                raise UsageError(f"container {c.name}: {paths[c.name]} is not the netns of {c.node} "
                                 f"({paths[c.node]}), which the lab says it shares")


def _check_rule_exists(lab: Lab, c: Check) -> None:
    """A dropped_by rule must be one of the real rules given (the reach kind's check)."""
    from nsbox.kinds.checks.reach import check_rule_exists

    check_rule_exists(lab, c)  # type: ignore[arg-type]


def verify_external(lab: Lab, paths: dict[str, str], *, iptables: str = "nft", rules: dict[str, str] | None = None,
                    timing: Timing = Timing()) -> list[CheckResult]:
    """LAB's checks, run with the same verifier as `nsbox run`, in the namespaces at PATHS
    ({node: netns path}); RULES ({node: iptables-save text}) are the real rule sets that
    `dropped_by` checks name. Returns one CheckResult per check, in the lab's order."""
    from nsbox.session import LabSession

    with LabSession.external(prepare(lab, paths, iptables, rules)) as session:  # stops only the servers
        session.serve()
        return session.verify(timing)
