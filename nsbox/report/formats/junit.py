"""junit: JUnit XML (nsbox/report/junit.py): a testsuite per recipe, a testcase per check."""

from __future__ import annotations

from nsbox.report.formats import Format, register


def render(results: list) -> str:
    from nsbox.report import junit

    return junit.render(results)


def kernels(runs: list) -> str:
    from nsbox.report import kernels as matrix

    return matrix.render_junit(runs)


FORMAT = register(Format("junit", "JUnit XML, for CI", render, kernels=kernels))
