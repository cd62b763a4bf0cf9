"""`nsbox run RECIPE... --kernel KERNEL...` and `nsbox doctor --kernel KERNEL`.

Everything the user gave is checked here before anything boots (kernels, tools, recipes
and --set values in the host's recipe jail, --output): bad input is one line and exit 2.
Then, for each kernel in the order given, this very nsbox runs the recipes there
(`--format json`): in a throwaway VM (boot.py), or for `host` on this machine in its
usual sandbox; the results come back as data and are reported per kernel and side by
side (nsbox/report/kernels.py). Exit codes as for one kernel, over all of them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import NoReturn

import click

from nsbox.errors import NsboxError, UsageError
from nsbox.vm import boot, guest
from nsbox.vm.kernel import Kernel, resolve_all
from nsbox.report.kernels import KernelRun, render
from nsbox.vm.results import BadReport, parse_report


@dataclass
class RunRequest:
    """What `nsbox run` was asked, as the inner nsbox's command line gets it."""

    recipes: tuple[str, ...]
    run_all: bool
    sets: tuple[str, ...]
    recipe_dirs: tuple[str, ...]
    timeout: float
    settle: float | None
    iptables: str
    on_host: bool

    def args(self) -> list[str]:
        from nsbox import recipe

        out = ["run"]
        for name in self.recipes:  # a recipe file: by its absolute path (the guest starts in /)
            out.append(os.path.abspath(name.partition(":")[0]) + name[len(name.partition(":")[0]):]
                       if recipe.is_path(name) else name)
        out += ["--all"] if self.run_all else []
        for s in self.sets:
            out += ["--set", s]
        for d in self.recipe_dirs:
            out += ["--recipes", os.path.abspath(d)]
        out += ["--timeout", repr(self.timeout), "--iptables", self.iptables, "--format", "json"]
        if self.settle is not None:
            out += ["--settle", repr(self.settle)]
        if self.on_host:
            out.append("--on-host")
        return out


def _fail(err: NsboxError) -> NoReturn:
    click.echo(f"nsbox: error: {err}", err=True)
    sys.exit(err.exit_code)


def run_kernels(specs: tuple[str, ...], req: RunRequest, fmt: str, output: str | None,
                unsupported: dict[str, bool]) -> NoReturn:
    """The whole `nsbox run --kernel` command; exits."""
    from nsbox.report.output import check_output_path, write_atomically
    from nsbox.verify.results import exit_code

    try:
        for flag, given in unsupported.items():
            if given:
                raise UsageError(f"{flag} cannot be used with --kernel (the labs live in throwaway VMs)")
        kernels = resolve_all(specs)
        found = boot.find_tools() if any(not k.is_host for k in kernels) else None
        target = check_output_path(output, sandboxed=False) if output is not None else None
        names = _check_recipes(req)
    except NsboxError as e:
        _fail(e)
    runs = [_run_one(k, req.args(), found, names) for k in kernels]
    text = render(runs, fmt)
    try:
        if target is not None:
            write_atomically(target, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except NsboxError as e:
        _fail(e)
    sys.exit(exit_code([r for run in runs for r in run.results]))


def _check_recipes(req: RunRequest) -> list[str]:
    """Recipes and --set values, loaded and validated in the host's recipe jail: a refused one
    is bad input (exit 2) before any VM boots. Kernel-dependent checks are the guest's."""
    from nsbox import cli

    names = (cli.ALL, *req.recipes) if req.run_all else req.recipes
    cli._check_recipe_sources(names, req.recipe_dirs)  # noqa: SLF001 - the same trust checks as run
    out = []
    for entry in cli.load_entries_jailed(names, cli.parse_sets(req.sets), req.recipe_dirs):
        if isinstance(entry, cli.Refused):
            raise UsageError(f"{entry.name}: {entry.error}")
        out.append(entry.name)
    return out


def _run_one(kernel: Kernel, args: list[str], found: boot.Tools | None, names: list[str]) -> KernelRun:
    start = time.monotonic()
    if kernel.is_host:
        rc, out = guest.run_here(args)
        run = _from_report(KernelRun(kernel.label, kernel.release, "host"), rc, out, b"")
    else:
        assert found is not None
        accel = boot.accel_for(kernel, found)
        how = f"QEMU/{accel.name}"
        click.echo(f"nsbox: kernel {kernel.label}: booting under {how} ({accel.why})", err=True)
        run = KernelRun(kernel.label, kernel.release, how)
        try:
            got = boot.run(kernel, guest.script(args), found, accel)
        except boot.VmError as e:
            run.error = str(e)
        else:
            files = got.files
            run.release = files.get("release", b"").decode("utf-8", "replace").strip() or kernel.release
            if "rc" not in files:
                tail = " | ".join(ln for ln in got.console.splitlines()[-5:] if ln.strip())
                run.error = f"the VM did not run nsbox (vng exit {got.exit_code}): {tail or 'no output'}"
            else:
                run = _from_report(run, _int(files["rc"]), files.get("stdout", b""), files.get("stderr", b""))
    run.seconds = time.monotonic() - start
    if run.error:
        click.echo(f"nsbox: error: kernel {kernel.label}: {run.error}", err=True)
        run.results = _failed(run.results, names, run.error)
    return run


def _from_report(run: KernelRun, rc: int, out: bytes, err: bytes) -> KernelRun:
    for line in err.decode("utf-8", "replace").splitlines()[-20:]:
        click.echo(f"[{run.label}] {line}", err=True)
    try:
        run.results = parse_report(out)
    except BadReport as e:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        run.error = f"nsbox exited {rc} without a report ({e}){': ' + last[0] if last[0] else ''}"
    return run


def _failed(results: list, names: list[str], error: str) -> list:
    """Every recipe of a kernel that gave no results: a failure holding the error."""
    from nsbox.verify.results import RecipeResult

    return results or [RecipeResult(n, "fail", error=error) for n in names]


def _int(data: bytes) -> int:
    try:
        return int(data.strip() or b"-1")
    except ValueError:
        return -1


def doctor_kernels(specs: tuple[str, ...], fmt: str) -> NoReturn:
    """`nsbox doctor --kernel K...`: doctor run on each kernel; exits with the worst status."""
    try:
        kernels = resolve_all(specs)
        found = boot.find_tools() if any(not k.is_host for k in kernels) else None
    except NsboxError as e:
        _fail(e)
    worst = 0
    for k in kernels:
        args = ["doctor", "--format", fmt]
        if k.is_host:
            rc, out = guest.run_here(args)
        else:
            assert found is not None
            accel = boot.accel_for(k, found)
            click.echo(f"nsbox: kernel {k.label}: booting under QEMU/{accel.name} ({accel.why})", err=True)
            try:
                got = boot.run(k, guest.script(args), found, accel)
            except boot.VmError as e:
                _fail(e)
            rc, out = _int(got.files.get("rc", b"")), got.files.get("stdout", b"")
            for line in got.files.get("stderr", b"").decode("utf-8", "replace").splitlines()[-20:]:
                click.echo(f"[{k.label}] {line}", err=True)
            if "rc" not in got.files:
                _fail(boot.VmError(f"kernel {k.label}: the VM did not run nsbox (vng exit {got.exit_code})"))
        if fmt == "text":
            click.echo(f"=== kernel {k.label} ===")
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.stdout.flush()
        worst = max(worst, rc if rc >= 0 else 1)
    sys.exit(worst)
