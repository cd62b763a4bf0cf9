"""ktap: KTAP v1 (nsbox/report/ktap.py), the kernel selftests' format: a subtest per recipe."""

from __future__ import annotations

from nsbox.report.formats import Format, register


def render(results: list) -> str:
    from nsbox.report import ktap

    return ktap.render(results)


def kernels(runs: list) -> str:
    from nsbox.report import kernels as matrix

    return matrix.render_ktap(runs)


FORMAT = register(Format("ktap", "KTAP v1, for CI", render, kernels=kernels))
