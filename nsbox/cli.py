"""Command line: `nsbox list`, `nsbox run RECIPE...`.

Exit codes: 0 all passed, 1 a check failed (or the kernel refused), 2 bad usage
or input, 4 everything skipped, 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import click

from nsbox import __version__, recipe, sandbox
from nsbox.errors import NsboxError, UsageError
from nsbox.model import Lab
from nsbox.validate import validate


def _fail(err: NsboxError) -> None:
    click.echo(f"nsbox: error: {err}", err=True)
    sys.exit(err.exit_code)


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_labs(names: tuple[str, ...], sets: dict[str, str], recipe_dirs: tuple[str, ...]) -> list[Lab]:
    """Resolve, build and validate every requested lab; nothing touches the kernel."""
    recipes = [recipe.get(n, recipe_dirs) for n in names]
    for key in sets:
        if not any(p.name == key for r in recipes for p in r.params):
            choices = sorted({p.name for r in recipes for p in r.params})
            raise UsageError(f"no recipe given has a parameter {key!r} (parameters: {', '.join(choices) or 'none'})")
    labs = []
    for r in recipes:
        lab = r.build({k: v for k, v in sets.items() if any(p.name == k for p in r.params)})
        validate(lab)
        labs.append(lab)
    return labs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nsbox")
def main() -> None:
    """Container networking rebuilt from namespaces, veth, bridges, iptables and
    conntrack, then proven with real traffic."""


@main.command("list")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Also look for recipes in DIR.")
def list_cmd(recipe_dirs: tuple[str, ...]) -> None:
    """List the recipes with a one-line description."""
    try:
        found = recipe.discover(recipe_dirs)
    except NsboxError as e:
        _fail(e)
    width = max((len(n) for n in found), default=0)
    for name in sorted(found):
        r = found[name]
        params = " ".join(f"{p.name}={p.default}" for p in r.params)
        click.echo(f"{name.ljust(width)}  {r.description}" + (f"  [{params}]" if params else ""))


@main.command("clean")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def clean_cmd(dry_run: bool) -> None:
    """Remove --on-host labs whose nsbox process was killed before teardown.

    Follows the journals in /run/nsbox and removes exactly the namespaces they
    name; labs whose nsbox is still running are left alone."""
    from nsbox.kernel.journal import stale_journals
    from nsbox.runner import JOURNAL_DIR, remove_empty

    if os.geteuid() != 0:
        _fail(UsageError("clean removes --on-host labs from the real host and needs root"))
    journals = stale_journals(JOURNAL_DIR)
    failed = False
    for j in journals:
        click.echo(f"{'would remove' if dry_run else 'removing'} {os.path.basename(j.path or '')}: "
                   f"{' '.join(os.path.basename(p) for p in j.objects()) or 'nothing'}")
        if not dry_run:
            for problem in j.undo():
                failed = True
                click.echo(f"nsbox: error: {problem}", err=True)
    if not journals:
        click.echo("nothing to clean")
    if not dry_run:
        remove_empty(JOURNAL_DIR)
    sys.exit(1 if failed else 0)


@main.command("run")
@click.argument("recipes", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report format.")
@click.option("--on-host", is_flag=True,
              help="Build in the real host's namespaces (named, visible to `ip netns`) instead of a sandbox. Needs root.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter, e.g. containers=200.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Also look for recipes in DIR.")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds one probe waits; an expected deny costs this much.")
@click.option("--then", "then", metavar="CMD",
              help="Before teardown, run CMD with sh inside the host node (e.g. 'ip netns exec c1 ping -c1 172.17.0.3').")
def run_cmd(recipes: tuple[str, ...], fmt: str, on_host: bool, sets: tuple[str, ...],
            recipe_dirs: tuple[str, ...], timeout: float, then: str | None) -> None:
    """Build each RECIPE, verify it with real traffic, report, tear down."""
    try:
        labs = load_labs(recipes, _parse_sets(sets), recipe_dirs)
        if on_host:
            if os.geteuid() != 0:
                raise UsageError("--on-host builds in the real host's namespaces and needs root")
            sandbox.end_cleanly_on_signals()
        elif not sandbox.inside():
            sandbox.preflight()
            sandbox.reexec(sys.argv[1:])
        else:
            sandbox.setup_inside()
    except NsboxError as e:
        _fail(e)
    _run(labs, fmt, on_host, timeout, then)


def _run(labs: list[Lab], fmt: str, on_host: bool, timeout: float, then: str | None) -> None:
    # Imported here: the sandbox is entered before anything that may start threads.
    from nsbox.report import json_report, text
    from nsbox.runner import RunOptions, run_lab
    from nsbox.verify.results import exit_code
    from nsbox.verify.verifier import Timing

    opts = RunOptions(on_host=on_host, timing=Timing(probe_timeout=timeout, deadline=max(4.0, 4 * timeout)),
                      then=then, then_stdout_to_stderr=(fmt == "json"))
    results = []
    try:
        for lab in labs:
            results.append(run_lab(lab, opts))
    except KeyboardInterrupt as e:
        click.echo("nsbox: interrupted; the lab was torn down", err=True)
        sys.exit(128 + getattr(e, "signum", 2))
    except NsboxError as e:
        _fail(e)
    if fmt == "json":
        click.echo(json_report.render(results))
    else:
        text.print_report(results)
    sys.exit(exit_code(results))
