"""Reports over several kernels: each kernel's own report, then recipe x kernel side by side.

A check that passes on one kernel and fails on another is a finding of its own
("differences"): the same recipe, the same check, different kernels.

    text   each kernel's usual report under a heading, then the matrix and the differences
    json   {"schema_version": 1, "kernels": [{"kernel", "release", "how", "error", "results",
            "summary"}], "matrix": {recipe: {kernel: {"status", "reason"}}},
            "differences": [{"recipe", "check", "kernels": {kernel: {"passed", "observed"}}}],
            "results": every RecipeResult with a "kernel" key added, "summary"}
    junit  one <testsuite> per recipe and kernel, named "KERNEL: RECIPE"
    ktap   one subtest block per kernel holding that kernel's usual KTAP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nsbox.report.ktap import description
from nsbox.textsafe import controls
from nsbox.verify.results import RecipeResult, summarize


@dataclass
class KernelRun:
    """The recipes' results on one kernel.

    label    the kernel's column name; release: its uname -r
    how      how it ran: "host", "QEMU/KVM", "QEMU/TCG"
    error    why there are no real results (the VM did not start...), else None; then
             every recipe is a "fail" holding that error
    """

    label: str
    release: str
    how: str
    results: list[RecipeResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Difference:
    recipe: str
    check: str
    kernels: dict[str, tuple[bool, str]]  # kernel -> (passed, observed)


def differences(runs: list[KernelRun]) -> list[Difference]:
    """Checks that passed on some kernel and failed on another."""
    out: list[Difference] = []
    for recipe in recipes(runs):
        seen: dict[str, dict[str, tuple[bool, str]]] = {}
        for run in runs:
            for r in run.results:
                if r.recipe == recipe:
                    for c in r.checks:
                        seen.setdefault(c.name, {})[run.label] = (c.passed, c.observed)
        for check, by_kernel in seen.items():
            if len({passed for passed, _ in by_kernel.values()}) > 1:
                out.append(Difference(recipe, check, by_kernel))
    return out


def recipes(runs: list[KernelRun]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [r.recipe for r in run.results if r.recipe not in names]
    return names


def cell(run: KernelRun, recipe: str) -> RecipeResult | None:
    return next((r for r in run.results if r.recipe == recipe), None)


def _reason(r: RecipeResult) -> str:
    if r.status == "skip":
        return r.skip_reason or "skipped"
    if r.error:
        return r.error
    if r.status == "fail":
        failed = [c.name for c in r.checks if not c.passed]
        return f"{len(failed)} of {len(r.checks)} checks failed: {', '.join(failed)}"
    return ""


def all_results(runs: list[KernelRun]) -> list[RecipeResult]:
    return [r for run in runs for r in run.results]


def render(runs: list[KernelRun], fmt: str) -> str:
    from nsbox.errors import UsageError
    from nsbox.report import formats

    f = formats.get(fmt)
    if f.kernels is None:
        raise UsageError(f"--format {fmt} has no report of several kernels (--kernels)")
    return f.kernels(runs)


def render_text(runs: list[KernelRun]) -> str:
    from nsbox.report.output import render as render_one

    parts: list[str] = []
    for run in runs:
        parts.append(f"=== kernel {controls(run.label)} ({controls(run.release)}, {run.how}, "
                     f"{run.seconds:.0f} s) ===\n")
        if run.error:
            parts.append(f"error: {controls(run.error)}\n")
        parts.append(render_one(run.results, "text") + "\n")
    parts.append("\n".join(matrix_lines(runs)) + "\n")
    return "".join(parts)


def matrix_lines(runs: list[KernelRun]) -> list[str]:
    names = recipes(runs)
    notes: list[str] = []
    rows = [["recipe", *(controls(run.label) for run in runs)]]
    for name in names:
        row = [controls(name)]
        for run in runs:
            r = cell(run, name)
            if r is None:
                row.append("-")
                continue
            text = r.status.upper()
            why = _reason(r)
            if why and r.status != "pass":
                notes.append(f"[{len(notes) + 1}] {controls(run.label)}: {controls(name)}: {controls(why)}")
                text += f" [{len(notes)}]"
            row.append(text)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["Kernel matrix (recipe x kernel)"]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines += ["  " + n for n in notes]
    diffs = differences(runs)
    if diffs:
        lines.append("Checks whose verdict differs between kernels:")
        for d in diffs:
            side = "; ".join(f"{'PASS' if p else 'FAIL'} on {controls(k)} (observed {controls(o)})"
                             for k, (p, o) in d.kernels.items())
            lines.append(f"  {controls(d.recipe)}: {controls(d.check)}: {side}")
    s = summarize(all_results(runs))
    lines.append(f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped "
                 f"(recipe runs over {len(runs)} kernels)")
    return lines


def render_json(runs: list[KernelRun]) -> str:
    from nsbox.report.json_report import SCHEMA_VERSION

    matrix = {name: {run.label: ({"status": r.status, "reason": _reason(r)} if (r := cell(run, name)) else None)
                     for run in runs} for name in recipes(runs)}
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kernels": [{"kernel": run.label, "release": run.release, "how": run.how, "error": run.error,
                     "seconds": round(run.seconds, 1), "results": [r.to_json() for r in run.results],
                     "summary": summarize(run.results)} for run in runs],
        "matrix": matrix,
        "differences": [{"recipe": d.recipe, "check": d.check,
                         "kernels": {k: {"passed": p, "observed": o} for k, (p, o) in d.kernels.items()}}
                        for d in differences(runs)],
        "results": [{**r.to_json(), "kernel": run.label} for run in runs for r in run.results],
        "summary": summarize(all_results(runs)),
    }
    return json.dumps(doc, indent=2) + "\n"


def render_junit(runs: list[KernelRun]) -> str:
    import xml.etree.ElementTree as ET

    from nsbox.report import junit

    root = ET.Element("testsuites", name="nsbox")
    suites = []
    for run in runs:
        for r in run.results:
            suite = junit._suite(r)  # noqa: SLF001 - the one-kernel suite, renamed for its kernel
            suite.set("name", junit._text(f"{run.label}: {r.recipe}"))  # noqa: SLF001
            for case in suite.iter("testcase"):
                case.set("classname", junit._text(f"{run.label}.{r.recipe}"))  # noqa: SLF001
            suites.append(suite)
    root.extend(suites)
    root.attrib.update(tests=str(sum(int(s.get("tests", 0)) for s in suites)),
                       failures=str(sum(int(s.get("failures", 0)) for s in suites)),
                       errors=str(sum(int(s.get("errors", 0)) for s in suites)),
                       time=f"{sum(r.duration_s for r in all_results(runs)):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_ktap(runs: list[KernelRun]) -> str:
    from nsbox.report import ktap

    lines = [ktap.VERSION, f"1..{len(runs)}"]
    totals: dict[str, int] = {}
    for i, run in enumerate(runs, 1):
        inner = ktap.render(run.results).splitlines() if run.results else [ktap.VERSION, "1..0"]
        for ln in inner:
            if ln.startswith("# Totals: "):
                for item in ln[len("# Totals: "):].split():
                    k, _, v = item.partition(":")
                    totals[k] = totals.get(k, 0) + int(v)
                continue
            lines.append(ktap.INDENT + ln)
        statuses = {r.status for r in run.results}
        name = description(f"kernel {run.label}")
        if run.error or "fail" in statuses:
            lines.append(f"not ok {i} {name}")
        elif statuses == {"skip"}:
            lines.append(f"ok {i} {name} # SKIP every recipe skipped")
        else:
            lines.append(f"ok {i} {name}")
    lines.append("# Totals: " + " ".join(f"{k}:{v}" for k, v in totals.items()))
    return "\n".join(lines) + "\n"
