"""Collect the artifacts of a recipe's failed checks while its lab is still live."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from nsbox.artifacts import capture
from nsbox.artifacts.dumps import DUMPS, NODE_DUMPS, dump_node
from nsbox.artifacts.folder import Folder
from nsbox.artifacts.involved import involved_nodes, slug
from nsbox.kernel.realize import Realized
from nsbox.model import ConntrackCheck, ReachCheck
from nsbox.verify.probes import probe
from nsbox.verify.results import CheckResult, RecipeResult
from nsbox.verify.verifier import Timing

MAX_CAPTURES = 8  # each re-probe of an expected deny costs a probe timeout


@dataclass
class _Entry:
    result: CheckResult
    nodes: list[str]
    files: list[str] = field(default_factory=list)
    capture: dict = field(default_factory=dict)


def collect(built: Realized, result: RecipeResult, base_dir: str, timing: Timing,
            node_state: bool = False) -> str:
    """Write DIR/RECIPE[.N]/ for RESULT's failed checks; set each one's `artifacts`. Returns the folder.
    NODE_STATE: also each machine's state as its tools print it (NODE_DUMPS), pass or fail.

    BASE_DIR is what target.prepare_dir returned (its directory already opened);
    a plain path is checked and opened here."""
    from nsbox.artifacts.target import ArtifactsTarget, prepare_dir

    if not isinstance(base_dir, ArtifactsTarget):
        base_dir = prepare_dir(base_dir, sandboxed=False)
    start = time.monotonic()
    lab = built.lab
    folder = _fresh_dir(base_dir, lab.name)
    try:
        return _collect(built, result, folder, timing, start, node_state)
    finally:
        folder.close()


def _collect(built: Realized, result: RecipeResult, folder: Folder, timing: Timing, start: float,
             node_state: bool = False) -> str:
    lab = built.lab
    root = folder.path
    nodes: dict[str, Folder] = {}

    def node_folder(node: str) -> Folder:
        if node not in nodes:
            nodes[node] = folder.sub(slug(node))
        return nodes[node]
    by_name = {c.name: c for c in lab.checks}
    entries = [_Entry(r, involved_nodes(lab, by_name[r.name])) for r in result.checks if not r.passed]

    dumped: dict[str, list[str]] = {}
    for e in entries:
        for node in e.nodes:
            if node not in dumped:
                dumped[node] = dump_node(built.path(node), node_folder(node))
            e.files += dumped[node]

    captured: dict[str, list[str]] = {}
    for e in entries:
        check = by_name[e.result.name]
        if isinstance(check, ReachCheck):
            if len(captured) < MAX_CAPTURES:
                e.capture = _capture(built, check, root, node_folder, timing)
                captured[check.name] = [os.path.join(root, c["file"]) for c in e.capture["files"]]
                e.files += captured[check.name]
            else:
                e.capture = {"note": f"not captured: only the first {MAX_CAPTURES} failed probes are"}
    for e in entries:  # a conntrack check is explained by its connection's capture
        check = by_name[e.result.name]
        if isinstance(check, ConntrackCheck):
            e.files += captured.get(check.of, [])

    for e in entries:
        e.result.artifacts = list(e.files)
    machines = _machine_state(built, node_folder) if node_state else {}
    try:
        _write_summary(folder, built, entries, time.monotonic() - start, machines)
    finally:
        for f in nodes.values():
            f.close()
    return root


def _fresh_dir(base_dir, recipe: str) -> Folder:
    """DIR/RECIPE, or DIR/RECIPE.2, .3, ... : never mix two runs, never delete what is there.
    DIR's missing directories are made now (mkdirat, through the fd prepare_dir opened)."""
    from nsbox import safefs

    fd, path = safefs.make_dirs(base_dir.walked)
    base = Folder(fd, path)
    name = slug(recipe)
    try:
        for n in range(1, 1000):
            try:
                return base.sub(name if n == 1 else f"{name}.{n}", fresh=True)
            except FileExistsError:
                continue
    finally:
        base.close()
    raise FileExistsError(f"{path}: too many earlier runs of {recipe}")


def _capture(built: Realized, check: ReachCheck, root: str, node_folder, timing: Timing) -> dict:
    target = built.lab.target(check.src, check.dst, check.proto, check.port, check.family)
    dst_ip, src = target.ip, built.lab.netns_of(check.src).name
    nodes = [src] + ([target.node.name] if target.node is not None and target.node.name != src else [])
    where = [(n, built.path(n), node_folder(n), f"capture-{slug(check.name)}.pcap") for n in nodes]
    flt = capture.Filter(dst_ip, check.proto, check.port)
    running = capture.start(where, flt)
    p = probe(check.proto, built.path(src), dst_ip, check.port, timing.probe_timeout, check.query,
              size=check.size, df=check.df)
    outcomes = running.stop()
    where_to = f"{dst_ip}:{check.port}" if check.port else dst_ip
    return {"probe": f"re-ran {check.proto} {check.src} -> {where_to}: "
                     f"{'reached' if p.reachable else 'did not reach'} ({p.detail})",
            "filter": flt.bpf(),
            "note": running.why_not_tcpdump,
            "files": [{"file": os.path.relpath(o.file, root), "node": o.node, "by": o.by, "packets": o.packets,
                       **({"note": o.note} if o.note else {})} for o in outcomes]}


def _machine_state(built: Realized, node_folder) -> dict[str, list[str]]:
    """Each machine's root namespace (a Kubernetes node, the Docker host; every node where
    the lab names no machines) dumped as a person reads it there: ip route, ip neigh,
    bridge fdb, iptables-save, ipset list. Machine -> files written."""
    lab = built.lab
    roots = [(m.name, m.nodes[0]) for m in lab.machines] or [(n, n) for n in lab.nodes]
    return {name: dump_node(built.path(node), node_folder(node), NODE_DUMPS) for name, node in roots}


def _write_summary(folder: Folder, built: Realized, entries: list[_Entry], seconds: float,
                   machines: dict[str, list[str]] | None = None) -> None:
    machines = machines or {}
    root = folder.path
    names = built.netns_names()
    rel = lambda f: os.path.relpath(f, root)  # noqa: E731
    summary = {
        "recipe": built.lab.name,
        "collected_s": round(seconds, 2),
        "nodes": {n: names[n] for e in entries for n in e.nodes},
        "checks": [{"name": e.result.name, "expected": e.result.expected, "observed": e.result.observed,
                    "detail": e.result.detail, "nodes": e.nodes, "files": [rel(f) for f in e.files],
                    "capture": e.capture} for e in entries],
        "machines": {m: [rel(f) for f in files] for m, files in machines.items()},
    }
    with folder.create("summary.json") as f:
        f.write((json.dumps(summary, indent=2) + "\n").encode())

    tools_line = ", ".join(f"{d.file} ({' '.join(d.argv)})" for d in DUMPS)
    when = "when its checks failed" if entries else "at the end of its run (every check passed)"
    lines = [
        f"nsbox artifacts of recipe {built.lab.name}: what the kernel held {when},",
        "collected inside the live lab before teardown, by the real tools run in each namespace",
        "(nsenter --net=...). Each NODE/ folder holds:",
        f"  {tools_line}",
        "  capture-CHECK.pcap: that check's probe, sent once more while capturing (open with",
        "  `tcpdump -nr FILE` or Wireshark); a *.error.txt file says why a dump is missing.",
        "",
    ]
    if machines:
        lines += ["Each machine's state as its own tools print it there (--node-state): "
                  + ", ".join(f"{d.file} ({' '.join(d.argv)})" for d in NODE_DUMPS) + ":"]
        lines += [f"  {m}: " + " ".join(rel(f) for f in files) for m, files in machines.items()]
        lines.append("")
    for e in entries:
        r = e.result
        lines.append(f"FAIL  {r.name}: expected {r.expected}, observed {r.observed}")
        if r.detail:
            lines.append(f"      {r.detail}")
        lines.append("      namespaces: " + ", ".join(f"{n} (netns {names[n]})" for n in e.nodes))
        if e.capture.get("probe"):
            lines.append(f"      capture: {e.capture['probe']}; filter '{e.capture['filter']}'")
            for c in e.capture["files"]:
                lines.append(f"        {c['file']}: {c['packets']} packets, by {c['by']}"
                             + (f" ({c['note']})" if c.get("note") else ""))
        if e.capture.get("note"):
            lines.append(f"      note: {e.capture['note']}")
        lines.append("      files: " + " ".join(rel(f) for f in e.files))
        lines.append("")
    with folder.create("README.txt") as f:
        f.write("\n".join(lines).encode())
