"""Command line: `nsbox list`, `nsbox run RECIPE...`, `nsbox clean`.

Exit codes: 0 all passed, 1 a check failed (or the kernel refused), 2 bad usage
or input, 4 everything skipped, 128+N ended by signal N (130 for Ctrl-C).

What runs where (see also the README's security section): this process only
parses the command line. Recipe code runs inside the sandbox (the default), or
for --on-host and `list` in the recipe jail (nsbox/sandbox/jail.py); the lab is
then validated again here before the kernel is touched.
"""

from __future__ import annotations

import math
import os
import sys

import click

from nsbox import __version__, sandbox
from nsbox.errors import NsboxError, UsageError, missing_module
from nsbox.model import Lab
from nsbox.validate import validate


def _fail(err: NsboxError) -> None:
    click.echo(f"nsbox: error: {err}", err=True)
    sys.exit(err.exit_code)


class _Timeout(click.ParamType):
    """Seconds, finite, within a range (click's FloatRange lets 'nan' through)."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value))
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g} seconds", param, ctx)
        return number


def parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in sets:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"--set {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def load_labs(names: tuple[str, ...], sets: dict[str, str], recipe_dirs: tuple[str, ...]) -> list[Lab]:
    """Resolve, build and validate every requested lab. Runs recipe code: call it
    only inside the sandbox or the recipe jail."""
    from nsbox import recipe

    recipes = [recipe.get(n, recipe_dirs) for n in select(names, recipe_dirs)]
    for key in sets:
        if not any(p.name == key for r in recipes for p in r.params):
            choices = sorted({p.name for r in recipes for p in r.params})
            raise UsageError(f"no recipe given has a parameter {key!r} (parameters: {', '.join(choices) or 'none'})")
    labs = []
    for r in recipes:
        own = {k: v for k, v in sets.items() if any(p.name == k for p in r.params)}
        lab = r.build(own)
        lab.source = r.path  # type: ignore[attr-defined]
        lab.sets = own  # type: ignore[attr-defined]
        validate(lab)
        labs.append(lab)
    return labs


def select(patterns: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> list[str]:
    """Recipe names for PATTERNS: names, files, shell-style patterns ('k8s-*'), or ALL."""
    import fnmatch

    from nsbox import recipe

    if not any(ch in p for p in patterns for ch in "*?[") and ALL not in patterns:
        return list(patterns)
    known = sorted(recipe.catalogue(recipe_dirs).recipes)
    out: list[str] = []
    for p in patterns:
        if p == ALL:
            matched = known
        elif any(ch in p for ch in "*?["):
            matched = fnmatch.filter(known, p)
            if not matched:
                raise UsageError(f"no recipe matches {p!r} (known: {', '.join(known)})")
        else:
            matched = [p]
        out += [m for m in matched if m not in out]
    return out


ALL = ":all"  # what --all stands for among the names


def load_labs_jailed(names: tuple[str, ...], sets: dict[str, str], recipe_dirs: tuple[str, ...]) -> list[Lab]:
    """load_labs() in the recipe jail; the labs come back as data and are validated again here."""
    from nsbox.model.serialize import lab_from_dict, lab_to_dict
    from nsbox.sandbox import jail

    data = jail.run(lambda: [lab_to_dict(lab) for lab in load_labs(names, sets, recipe_dirs)])
    if not isinstance(data, list) or len(data) != len(names):
        raise UsageError("the recipe loader did not return one lab per recipe")
    labs = [lab_from_dict(d) for d in data]
    for lab in labs:
        validate(lab)
    return labs


class _Main(click.Group):
    """A dependency that does not import is a broken install: one line, exit 2, wherever
    it is first imported (in this process or inside the sandbox), never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImportError as e:
            err = missing_module(e)
            if err is None:
                raise
            _fail(err)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nsbox")
def main() -> None:
    """Container networking rebuilt from namespaces, veth, bridges, iptables and
    conntrack, then proven with real traffic."""


def _catalogue_data(recipe_dirs: tuple[str, ...]) -> dict:
    from nsbox import recipe

    cat = recipe.catalogue(recipe_dirs)
    return {"recipes": [{"name": r.name, "description": r.description, "path": r.path,
                         "params": [p.to_json() for p in r.params]} for r in cat.recipes.values()],
            "broken": cat.broken}


@main.command("list")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every recipe with its parameters (type, default, range, help) and file.")
def list_cmd(recipe_dirs: tuple[str, ...], fmt: str) -> None:
    """List the recipes with a one-line description.

    Recipe files are loaded in the recipe jail: their code cannot reach the host's network."""
    import json

    from nsbox.sandbox import jail

    try:
        data = jail.run(lambda: _catalogue_data(recipe_dirs))
    except NsboxError as e:
        _fail(e)
    recipes = sorted(data["recipes"], key=lambda r: str(r["name"]))
    if fmt == "json":
        broken = [{"file": f, "error": e} for f, e in sorted(data["broken"].items())]
        click.echo(json.dumps({"schema_version": 1, "recipes": recipes, "broken": broken}, indent=2))
        sys.exit(2 if broken else 0)
    width = max((len(str(r["name"])) for r in recipes), default=0)
    for r in recipes:
        params = " ".join(f"{p['name']}={p['default']}" for p in r["params"])
        click.echo(f"{str(r['name']).ljust(width)}  {r['description']}" + (f"  [{params}]" if params else ""))
    for path, error in sorted(data["broken"].items()):
        click.echo(f"nsbox: error: {error}", err=True)
    sys.exit(2 if data["broken"] else 0)


@main.command("doctor")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Also look for recipes in DIR.")
def doctor_cmd(fmt: str, recipe_dirs: tuple[str, ...]) -> None:
    """What this machine has (kernel features, tools, user namespaces), and which recipes can run.

    Exit 0 when nsbox is usable here, 2 when its installation is broken."""
    from nsbox import doctor
    sys.exit(doctor.main(fmt, recipe_dirs))


@main.command("clean")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def clean_cmd(dry_run: bool) -> None:
    """Remove --on-host labs whose nsbox process was killed before teardown.

    Follows the root-owned journals in /run/nsbox and removes only the namespaces
    they prove nsbox created; labs whose nsbox still runs are left alone, and a
    journal that fails a check is reported in one line and skipped (exit 1).
    Also removes the records of your live labs (`nsbox up`) whose holder is gone."""
    from nsbox.kernel import onhost
    from nsbox.live import commands as live

    if os.geteuid() != 0:
        _fail(UsageError("clean removes --on-host labs from the real host and needs root"))
    done = onhost.clean(dry_run)
    done.out += [] if dry_run else live.sweep()  # records of live labs whose holder is gone
    for line in done.out:
        click.echo(line)
    for line in done.errors:
        click.echo(line, err=True)
    sys.exit(1 if done.failed else 0)


@main.command("run")
@click.argument("recipes", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every recipe (those that cannot run here are skipped).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "ktap"]), default="text",
              show_default=True, help="Report format: text for people; json, junit (JUnit XML) or ktap (KTAP v1) for CI.")
@click.option("--output", "output", metavar="FILE",
              help="Write the report to FILE (replaced atomically) instead of stdout.")
@click.option("--on-host", is_flag=True,
              help="Build in the real host's namespaces (named, visible to `ip netns`) instead of a sandbox. Needs root.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter, e.g. containers=200.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
@click.option("--timeout", type=_Timeout(0.1, 60), default=1.0, show_default=True,
              help="Seconds one probe waits; an expected deny costs this much.")
@click.option("--settle", type=_Timeout(0, 600), default=None, metavar="S",
              help="Seconds a check whose result differs from the expected one is re-probed, in case the "
                   "lab is still settling (default: 4, or 4 x --timeout if larger). 0: judge the first probe.")
@click.option("--then", "then", metavar="CMD",
              help="Before teardown, run CMD with sh inside a node (e.g. 'ip netns exec c1 ping -c1 172.17.0.3').")
@click.option("--then-in", "then_in", metavar="NODE", default="host", show_default=True,
              help="The node (or container) whose netns --then runs in.")
@click.option("--iptables", "iptables_flavour", type=click.Choice(["auto", "nft", "legacy"]), default="auto",
              show_default=True, help="Where rules go: auto = what this system's `iptables` is (nft on Debian 12).")
@click.option("--artifacts", "artifacts", metavar="DIR",
              help="When a check fails, keep state dumps and a capture of its probe in DIR/RECIPE/ (README.txt there).")
def run_cmd(recipes: tuple[str, ...], run_all: bool, fmt: str, output: str | None, on_host: bool,
            sets: tuple[str, ...], recipe_dirs: tuple[str, ...], timeout: float, settle: float | None,
            then: str | None, then_in: str, iptables_flavour: str, artifacts: str | None) -> None:
    """Build each RECIPE, verify it with real traffic, report, tear down.

    RECIPE is a name from `nsbox list`, a shell-style pattern ('bridge-*'), or a
    path to a recipe file (./my_lab.py)."""
    if not recipes and not run_all:
        raise click.UsageError("Missing argument 'RECIPES...' (or --all).")
    if run_all:
        recipes = (ALL, *recipes)
    try:
        parsed_sets = parse_sets(sets)
        if artifacts is not None:  # absolute: the same path inside the sandbox and out
            from nsbox.artifacts.target import prepare_dir
            artifacts = prepare_dir(artifacts, sandboxed=not on_host)
        if output is not None:
            from nsbox.report.output import check_output_path

            output = check_output_path(output, sandboxed=not on_host)
        if on_host:
            if os.geteuid() != 0:
                raise UsageError("--on-host builds in the real host's namespaces and needs root")
            labs = load_labs_jailed(recipes, parsed_sets, recipe_dirs)
        elif not sandbox.inside():
            sandbox.preflight()
            sandbox.reexec(sys.argv[1:])
        else:
            sandbox.setup_inside()
            labs = load_labs(recipes, parsed_sets, recipe_dirs)
        _refuse_what_the_kernel_would(labs)
        if then is not None:
            for lab in labs:
                if then_in not in lab.nodes and then_in not in lab.containers:
                    raise UsageError(f"--then-in {then_in}: no node or container {then_in!r} in {lab.name}")
    except NsboxError as e:
        _fail(e)
    _run(labs, fmt, on_host, timeout, then, artifacts, output,
         rerun_flags=_rerun_flags(on_host, timeout, recipe_dirs, settle), iptables_flavour=iptables_flavour,
         then_in=then_in, settle=settle)


def _rerun_flags(on_host: bool, timeout: float, recipe_dirs: tuple[str, ...],
                 settle: float | None = None) -> list[str]:
    flags = ["--on-host"] if on_host else []
    if timeout != 1.0:
        flags += ["--timeout", f"{timeout:g}"]
    if settle is not None:
        flags += ["--settle", f"{settle:g}"]
    for d in recipe_dirs:
        flags += ["--recipes", os.path.abspath(d)]
    return flags


def rerun_command(lab: Lab, flags: list[str]) -> str:
    """The command that rebuilds LAB as this run did and opens a shell in it."""
    import shlex

    from nsbox import recipe

    argv = ["nsbox", "run", lab.name]
    for key, value in sorted(getattr(lab, "sets", {}).items()):
        argv += ["--set", f"{key}={value}"]
    argv += flags
    source = getattr(lab, "source", "")
    if source and "--recipes" not in flags and os.path.dirname(source) not in map(str, recipe.builtin_dirs()):
        argv += ["--recipes", os.path.dirname(source)]
    return " ".join(shlex.quote(a) for a in argv + ["--then", "bash"])


def _refuse_what_the_kernel_would(labs: list[Lab]) -> None:
    """Sysctl keys and values, tried in a throwaway netns before anything is built
    (labs that will be skipped for a missing feature are not held to it)."""
    from nsbox.kernel import features, nftables, sysctl

    for lab in labs:
        if not features.missing(frozenset(lab.requires)):
            sysctl.check_lab(lab)
            nftables.check_lab(lab)


def _run(labs: list[Lab], fmt: str, on_host: bool, timeout: float, then: str | None,
         artifacts: str | None = None, output: str | None = None, rerun_flags: list[str] | None = None,
         iptables_flavour: str = "auto", then_in: str = "host", settle: float | None = None) -> None:
    # Imported here: the sandbox is entered before anything that may start threads.
    from nsbox.report import output as report_output
    from nsbox.runner import RunOptions, run_lab
    from nsbox.verify.results import exit_code
    from nsbox.verify.verifier import Timing

    deadline = max(4.0, 4 * timeout) if settle is None else settle
    opts = RunOptions(on_host=on_host, timing=Timing(probe_timeout=timeout, deadline=deadline),
                      then=then, then_stdout_to_stderr=(fmt != "text" or output is not None),
                      artifacts_dir=artifacts, iptables=iptables_flavour, then_in=then_in)
    results = []
    try:
        for lab in labs:
            results.append(run_lab(lab, opts))
            results[-1].rerun = rerun_command(lab, rerun_flags or [])
    except NsboxError as e:
        _fail(e)
    try:
        report_output.emit(results, fmt, output)
    except NsboxError as e:
        _fail(e)
    sys.exit(exit_code(results))


@main.command("validate")
@click.argument("recipes", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Validate every recipe.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def validate_cmd(recipes: tuple[str, ...], run_all: bool, sets: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Check RECIPE's lab as `run` would before it builds anything, and build nothing.

    The recipe runs in the recipe jail; the model is validated; sysctl keys and
    values are tried in a throwaway netns and nft rulesets with `nft -c`, as `run` does.
    Exit 0 with one line per recipe, or one error line and exit 2."""
    if not recipes and not run_all:
        raise click.UsageError("Missing argument 'RECIPES...' (or --all).")
    if run_all:
        recipes = (ALL, *recipes)
    try:
        labs = load_labs_jailed(recipes, parse_sets(sets), recipe_dirs)
        _refuse_what_the_kernel_would(labs)
    except NsboxError as e:
        _fail(e)
    for lab in labs:
        links = len(lab.veths) + len(lab.links) + sum(
            1 for n in lab.nodes.values() for i in n.interfaces.values() if i.kind == "bridge")
        rules = sum(len(c.rules) for n in lab.nodes.values()
                    for t in [*n.firewall.tables.values(), *n.firewall.tables6.values()] for c in t.chains.values())
        click.echo(f"ok  {lab.name}: {len(lab.nodes)} nodes, {links} links, {rules} rules, "
                   f"{len(lab.checks)} checks")


@main.command("explain")
@click.argument("recipe")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter, e.g. containers=3.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def explain_cmd(recipe: str, sets: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Print a bash script that rebuilds RECIPE's lab by hand (ip, sysctl, iptables-restore)."""
    from nsbox.plan.explain import script

    try:
        lab = load_labs_jailed((recipe,), parse_sets(sets), recipe_dirs)[0]
    except NsboxError as e:
        _fail(e)
    click.echo(script(lab, " ".join(["nsbox explain", recipe, *(f"--set {s}" for s in sets)])), nl=False)


@main.command("show")
@click.argument("recipe")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def show_cmd(recipe: str, fmt: str, sets: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Print RECIPE's topology: nodes, interfaces, bridges, addresses, veth pairs, NAT points."""
    from nsbox.plan.show import render

    try:
        lab = load_labs_jailed((recipe,), parse_sets(sets), recipe_dirs)[0]
    except NsboxError as e:
        _fail(e)
    click.echo(render(lab, fmt), nl=False)


# --------------------------------------------------------------------------- live labs (nsbox/live/)

@main.command("up")
@click.argument("recipe")
@click.option("--name", "name", metavar="LAB", help="The lab's name (default: the recipe's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter.")
@click.option("--on-host", is_flag=True, help="Build in the real host's namespaces instead of a sandbox. Needs root.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def up_cmd(recipe: str, name: str | None, sets: tuple[str, ...], on_host: bool, recipe_dirs: tuple[str, ...]) -> None:
    """Build RECIPE's lab and keep it up: explore it with shell, exec, status and verify; end it with down."""
    from nsbox.live import commands

    try:
        sys.exit(commands.up(recipe, name, parse_sets(sets), on_host, recipe_dirs))
    except NsboxError as e:
        _fail(e)


@main.command("_holder", hidden=True)
@click.argument("recipe")
@click.option("--name", required=True)
@click.option("--set", "sets", multiple=True)
@click.option("--recipes", "recipe_dirs", multiple=True)
@click.option("--on-host", is_flag=True)
@click.option("--ctl-fd", type=int, required=True)
@click.option("--ready-fd", type=int, required=True)
def holder_cmd(recipe: str, name: str, sets: tuple[str, ...], recipe_dirs: tuple[str, ...], on_host: bool,
               ctl_fd: int, ready_fd: int) -> None:
    """The process that owns a live lab (started by `nsbox up`)."""
    from nsbox.live import holder

    try:
        opts = holder.Options(recipe, name, on_host, parse_sets(sets), recipe_dirs, ctl_fd, ready_fd)
    except NsboxError as e:
        _fail(e)
    sys.exit(holder.main(opts))


@main.command("status")
@click.argument("lab", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status_cmd(lab: str | None, fmt: str) -> None:
    """Your live labs: state (up or gone), nodes, interfaces, addresses. Exit 1 if LAB is gone."""
    from nsbox.live import commands

    try:
        sys.exit(commands.status(lab, fmt))
    except NsboxError as e:
        _fail(e)


@main.command("verify")
@click.argument("lab")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "ktap"]), default="text",
              show_default=True)
@click.option("--timeout", type=_Timeout(0.1, 60), default=1.0, show_default=True,
              help="Seconds one probe waits; an expected deny costs this much.")
def verify_cmd(lab: str, fmt: str, timeout: float) -> None:
    """Run the recipe's checks against live LAB as it is now (again after each change you make)."""
    from nsbox.live import commands

    try:
        sys.exit(commands.verify(lab, fmt, timeout))
    except NsboxError as e:
        _fail(e)


@main.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("lab")
@click.argument("node")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(lab: str, node: str, cmd: tuple[str, ...]) -> None:
    """Run CMD in NODE of live LAB: nsbox exec LAB NODE -- CMD [ARGS...]."""
    from nsbox.live import commands

    try:
        commands.exec_(lab, node, list(cmd))
    except NsboxError as e:
        _fail(e)


@main.command("shell")
@click.argument("lab")
@click.argument("node")
def shell_cmd(lab: str, node: str) -> None:
    """An interactive shell in NODE of live LAB; its prompt says where: (LAB NODE)#."""
    from nsbox.live import commands

    try:
        commands.exec_(lab, node, [], shell=True)
    except NsboxError as e:
        _fail(e)


@main.command("down")
@click.argument("labs", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every live lab of yours.")
def down_cmd(labs: tuple[str, ...], every: bool) -> None:
    """Tear down live LAB (or a gone one's record)."""
    from nsbox.live import commands

    try:
        sys.exit(commands.down(labs, every))
    except NsboxError as e:
        _fail(e)
