"""The Kubernetes e2e NetworkPolicy model (namespaces x/y/z, pods a/b/c) and its cases.

The cases file (tests/data/netpol/cases.json, from the e2e suite's network_policy.go)
lists, per case, steps of actions (create/update a policy, label a namespace or pod,
delete every policy) and probes (port, protocol, the expected 9x9 table). `Scenario`
replays those actions on a Cluster; `tables` lays a truth table out as the e2e prints it
(expected / observed / comparison, `.` and `X`), in the form nsbox's matrix report renders
(nsbox.report.matrix.render), so a policy table reads like every other nsbox matrix.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nsbox.errors import ValidationError
from nsbox.kits.netpol.model import Cluster, ContainerPort, Pod, parse_policy
from nsbox.report.matrix import render

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PODS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)
REACHABLE, BLOCKED = ".", "X"


def pod_ip(key: str) -> str:
    """The model's pod address: 10.0.<ns#>.<pod#> (as cases.json invents them for ipBlock)."""
    ns, name = key.split("/")
    return f"10.0.{NAMESPACES.index(ns) + 1}.{POD_NAMES.index(name) + 1}"


def container_ports(ports: list[int], protocols: list[str]) -> tuple[ContainerPort, ...]:
    """One container port per (port, protocol), named serve-<port>-<proto> as the e2e names them."""
    return tuple(ContainerPort(f"serve-{p}-{proto.lower()}", p, proto) for p in ports for proto in protocols)


def model_cluster(ports: list[int], protocols: list[str]) -> Cluster:
    c = Cluster()
    for ns in NAMESPACES:
        c.add_namespace(ns)
    for key in PODS:
        ns, name = key.split("/")
        c.add_pod(Pod(ns, name, pod_ip(key), {"pod": name}, container_ports(ports, protocols)))
    return c


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str
    expected: dict[tuple[str, str], bool]  # every ordered pair, the diagonal included


@dataclass(frozen=True)
class Step:
    index: int
    actions: tuple[dict, ...]
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    ports: tuple[int, ...]
    protocols: tuple[str, ...]
    steps: tuple[Step, ...]


def parse_table(text: str) -> dict[tuple[str, str], bool]:
    lines = [ln.split("\t") for ln in text.strip().splitlines()]
    cols = lines[0][1:]
    out = {}
    for row in lines[1:]:
        for dst, cell in zip(cols, row[1:]):
            if cell not in (REACHABLE, BLOCKED):
                raise ValidationError(f"truth table cell {cell!r} is neither . nor X")
            out[(row[0], dst)] = cell == REACHABLE
    return out


def load_cases(path: str | Path) -> list[Case]:
    data = json.loads(Path(path).read_text())
    cases = []
    for c in data["cases"]:
        steps = tuple(Step(i + 1, tuple(s["actions"]),
                           tuple(Probe(p["port"], p["protocol"], parse_table(p["expected"])) for p in s["probes"]))
                      for i, s in enumerate(c["steps"]))
        cases.append(Case(c["id"], c["e2e_title"], tuple(c["model_ports"]), tuple(c["model_protocols"]), steps))
    return cases


class Scenario:
    """A case's cluster, replayed step by step."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.cluster = model_cluster(list(case.ports), list(case.protocols))

    def apply(self, action: dict) -> None:
        (op, arg), = action.items()
        c = self.cluster
        if op in ("create", "update"):
            c.apply(parse_policy(copy.deepcopy(arg["policy"]), arg["namespace"]))
        elif op == "labelNamespace":
            c.namespaces[arg["namespace"]].labels.update(arg["add"])
        elif op == "labelPod":
            pod = c.pods[arg["pod"]]
            pod.labels = dict(arg["set"]) if "set" in arg else {**pod.labels, **arg["add"]}
        elif op == "deleteAllPolicies":
            c.policies.clear()
        else:
            raise ValidationError(f"case {self.case.id}: unknown action {op!r}")

    def steps(self) -> Iterator[Step]:
        """Each step after its actions were applied to the cluster."""
        for step in self.case.steps:
            for a in step.actions:
                self.apply(a)
            yield step


def tables(name: str, nodes: list[str], expected: dict[tuple[str, str], bool],
           observed: dict[tuple[str, str], bool | None], *, include_self: bool = False) -> dict[str, Any]:
    """The matrix dict nsbox.report.matrix.render prints: the e2e's three tables. A cell left out
    (the diagonal, unless INCLUDE_SELF) prints `-`; an observation missing prints `?`; a None
    observation (a probe skipped, e.g. SCTP unsupported) prints `?` and counts as neither."""
    e_rows, o_rows, c_rows = [], [], []
    correct = incorrect = 0
    for s in nodes:
        e, o, c = [], [], []
        for d in nodes:
            if s == d and not include_self:
                e.append(""), o.append(""), c.append("")
                continue
            want, got = expected[(s, d)], observed.get((s, d))
            e.append(REACHABLE if want else BLOCKED)
            if got is None:
                o.append("?"), c.append("?")
                continue
            o.append(REACHABLE if got else BLOCKED)
            c.append(REACHABLE if got == want else BLOCKED)
            correct += got == want
            incorrect += got != want
        e_rows.append(e), o_rows.append(o), c_rows.append(c)
    return {"name": name, "nodes": list(nodes), "expected": e_rows, "observed": o_rows, "comparison": c_rows,
            "correct": correct, "incorrect": incorrect}


def render_tables(t: dict[str, Any]) -> str:
    return "\n".join(render(t))
