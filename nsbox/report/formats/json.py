"""json: every recipe and check with structured fields (nsbox/report/json_report.py, schema_version)."""

from __future__ import annotations

from nsbox.report.formats import Format, register


def render(results: list) -> str:
    from nsbox.report import json_report

    return json_report.render(results) + "\n"


def kernels(runs: list) -> str:
    from nsbox.report import kernels as matrix

    return matrix.render_json(runs)


FORMAT = register(Format("json", "for CI and scripts", render, kernels=kernels))
