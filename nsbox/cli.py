"""Command line: `nsbox list`, `nsbox run RECIPE...`, `nsbox clean`.

Exit codes: 0 all passed, 1 a check failed (or the kernel refused), 2 bad usage
or input, 4 everything skipped, 128+N ended by signal N (130 for Ctrl-C).

What runs where (see also docs/security.md): this process only
parses the command line. Recipe code runs inside the sandbox (the default), or
for --on-host and `list` in the recipe jail (nsbox/sandbox/jail.py); the lab is
then validated again here before the kernel is touched.
"""

from __future__ import annotations

import math
import os
import sys
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import click

from nsbox import __version__
from nsbox.completion import complete_recipes
from nsbox.errors import NsboxError, UsageError, missing_module
from nsbox.report import formats as report_formats  # the --format choices: one module per format

if TYPE_CHECKING:  # the model, validation and the sandbox are imported where used: --help stays fast
    from nsbox.model import Lab


def _fail(err: NsboxError) -> None:
    click.echo(f"nsbox: error: {err}", err=True)
    from nsbox.sandbox import result_pipe

    result_pipe.send_failure(err.exit_code)  # inside the sandbox: tell the supervisor (no report)
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
                _fail(UsageError(f"{param.opts[0] if param else 'seconds'} {str(value)!r}: not a number of seconds"))
        if not math.isfinite(number) or not self.low <= number <= self.high:
            # one line, not click's four (usage, hint, blank, error)
            _fail(UsageError(f"{param.opts[0] if param else 'seconds'} {str(value)!r}: not a number of seconds "
                             f"between {self.low:g} and {self.high:g}"))
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
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in item):
            raise UsageError(f"--set {item!r}: control characters (newline, tab...) are not allowed")
        out[key] = value
    return out


@dataclass
class Refused:
    """A recipe of a multi-recipe command that failed to load or validate: reported as
    that recipe's error while the others run (exit 2 overall: it was bad input)."""

    name: str
    error: str
    exit_code: int = 2


def load_labs(names: tuple[str, ...], sets: dict[str, str], recipe_dirs: tuple[str, ...]) -> list[Lab]:
    """Resolve, build and validate every requested lab; the first refusal is raised. Runs
    recipe code: call it only inside the sandbox or the recipe jail."""
    return [_raise_refused(x) for x in load_entries(names, sets, recipe_dirs)]


def _raise_refused(entry: Lab | Refused) -> Lab:
    if isinstance(entry, Refused):
        err = UsageError(entry.error)
        err.exit_code = entry.exit_code
        raise err
    return entry


def load_entries(names: tuple[str, ...], sets: dict[str, str],
                 recipe_dirs: tuple[str, ...]) -> list[Lab | Refused]:
    """One Lab, or the Refused error of that recipe, per recipe selected.

    Every lab goes through its serialized form (lab_to_dict -> lab_from_dict) and is
    validated there: the sandbox runs exactly what --on-host, validate, explain and show
    receive from the recipe jail, so one validation holds in every mode."""
    from nsbox.model.serialize import lab_from_dict, lab_to_dict

    recipes = [r for n in select(names, recipe_dirs) for r in _resolve(n, recipe_dirs)]
    for key in sets:
        if not any(p.name == key for r in recipes for p in r.params):
            choices = sorted({p.name for r in recipes for p in r.params})
            raise UsageError(f"no recipe given has a parameter {key!r} (parameters: {', '.join(choices) or 'none'})")
    out: list[Lab | Refused] = []
    for r in recipes:
        own = {k: v for k, v in sets.items() if any(p.name == k for p in r.params)}
        try:
            lab = r.build(own)
            lab.source, lab.sets = r.path or "", own
            from nsbox.session import load_and_validate

            lab = load_and_validate(lambda: lab_from_dict(_as_json(lab_to_dict(lab))))  # noqa: B023
        except NsboxError as e:
            if len(recipes) == 1:
                raise
            out.append(Refused(r.name, str(e), e.exit_code))
            continue
        out.append(lab)
    return out


def _as_json(data: dict) -> dict:
    """What the recipe jail's pipe carries: plain JSON, nothing else survives."""
    import json

    from nsbox.errors import RecipeError

    try:
        return json.loads(json.dumps(data))
    except (TypeError, ValueError, RecursionError) as e:
        raise RecipeError(f"the lab holds something that is not plain data: {type(e).__name__}: {e}") from None


def _resolve(name: str, recipe_dirs: tuple[str, ...]) -> list:
    """NAME's recipe; a recipe file's every recipe (FILE.py), or one of them (FILE.py:NAME)."""
    from nsbox import recipe

    if "." in name:  # not a recipe name: a file. (The k8s kit's import is ~25 ms a bridge-mode run skips.)
        from nsbox.kits.k8s import manifests

        if manifests.is_manifest(name):  # `nsbox run ./app.yaml`: Kubernetes objects, data not code
            return [manifests.recipe_for(name)]
    return recipe.get_file(name) if recipe.is_path(name) else [recipe.get(name, recipe_dirs)]


def select(patterns: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> list[str]:
    """Recipe names for PATTERNS: names, files, shell-style patterns ('k8s-*'), or ALL.
    Patterns are matched against the recipe names read from the files' source (no file runs)."""
    import fnmatch

    from nsbox import recipe

    if not any(ch in p for p in patterns for ch in "*?[") and ALL not in patterns:
        return list(patterns)
    known = sorted(recipe.index(recipe_dirs).files)
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
    return [_raise_refused(x) for x in load_entries_jailed(names, sets, recipe_dirs)]


def load_entries_jailed(names: tuple[str, ...], sets: dict[str, str],
                        recipe_dirs: tuple[str, ...]) -> list[Lab | Refused]:
    """load_entries() in the recipe jail; each lab comes back as data and is validated again here."""
    from nsbox.model.serialize import lab_from_dict, lab_to_dict
    from nsbox.sandbox import jail
    from nsbox.validate import validate

    def inside() -> list[dict]:
        return [{"refused": x.name, "error": x.error, "exit_code": x.exit_code} if isinstance(x, Refused)
                else {"lab": lab_to_dict(x)} for x in load_entries(names, sets, recipe_dirs)]

    data = jail.run(inside)
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise UsageError("the recipe loader did not return one lab per recipe")
    out: list[Lab | Refused] = []
    for d in data:
        if "refused" in d:
            code = d.get("exit_code") if d.get("exit_code") in (1, 2) else 2
            out.append(Refused(str(d["refused"]), " ".join(str(d.get("error")).split()), code))
            continue
        lab = lab_from_dict(d.get("lab"))
        try:
            validate(lab)
        except NsboxError as e:
            if len(data) == 1:
                raise
            out.append(Refused(lab.name, str(e), e.exit_code))
            continue
        out.append(lab)
    return out


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
    from nsbox import tools

    tools.sanitize_path()  # as root: only system directories on PATH for what nsbox spawns


def _catalogue_data(recipe_dirs: tuple[str, ...]) -> dict:
    from nsbox import listing, recipe

    return listing.catalogue_data(recipe.catalogue(recipe_dirs))


@main.command("list")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every recipe with its parameters (type, default, range, help) and file.")
def list_cmd(recipe_dirs: tuple[str, ...], fmt: str) -> None:
    """List the recipes with a one-line description.

    Recipe files are loaded in the recipe jail: their code cannot reach the host's network."""
    # (`nsbox list` alone is usually answered by nsbox.fastpath from an index of the
    # shipped recipes, without loading any; this is the path for everything else.)
    from nsbox import listing
    from nsbox.sandbox import jail

    try:
        data = jail.run(lambda: _catalogue_data(recipe_dirs))
    except NsboxError as e:
        _fail(e)
    out, err, code = listing.render(data, fmt)
    click.echo(out, nl=False)
    if err:
        click.echo(err, err=True, nl=False)
    sys.exit(code)


@main.command("doctor")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Also look for recipes in DIR.")
@click.option("--kernel", "kernels", multiple=True, metavar="KERNEL",
              help="Ask KERNEL instead, booted in a throwaway VM (see run --kernel; repeatable).")
def doctor_cmd(fmt: str, recipe_dirs: tuple[str, ...], kernels: tuple[str, ...] = ()) -> None:
    """What this machine has (kernel features, tools, user namespaces), and which recipes can run.

    Exit 0 when nsbox is usable here, 2 when its installation is broken."""
    from nsbox import doctor, recipe

    if kernels:  # nsbox/vm: doctor inside each kernel's VM; exits
        from nsbox.vm.run import doctor_kernels
        doctor_kernels(kernels, fmt)

    try:
        recipe.extra_dirs(recipe_dirs)  # a missing or untrusted DIR is a usage error, not a finding
    except NsboxError as e:
        _fail(e)
    sys.exit(doctor.main(fmt, recipe_dirs))


@main.command("clean")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def clean_cmd(dry_run: bool) -> None:
    """Remove --on-host labs whose nsbox process was killed before teardown.

    Follows the root-owned journals in /run/nsbox and removes only the namespaces
    they prove nsbox created; labs whose nsbox still runs are left alone, and a
    journal that fails a check is reported in one line and skipped (exit 1).
    Also removes the records of your live labs (`nsbox up`) whose holder is gone."""
    from nsbox.host import onhost
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
@click.argument("recipes", nargs=-1, shell_complete=complete_recipes)
@click.option("--all", "run_all", is_flag=True, help="Run every recipe (those that cannot run here are skipped).")
@click.option("--format", "fmt", type=click.Choice(report_formats.names()), default="text",
              show_default=True, help=report_formats.help_text())
@click.option("--output", "output", metavar="FILE",
              help="Write the report to FILE (replaced atomically) instead of stdout.")
@click.option("--on-host", is_flag=True,
              help="Build in the real host's namespaces (named, visible to `ip netns`) instead of a sandbox. Needs root.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter, e.g. containers=200.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
@click.option("--timeout", type=_Timeout(0.1, 60), default=1.0, show_default=True,
              help="Seconds one probe waits; what a deny check that names no dropping rule costs.")
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
@click.option("--node-state", "node_state", is_flag=True,
              help="With --artifacts: also each machine's state as its tools print it (ip route, ip neigh, "
                   "bridge fdb, iptables-save, ipset list), pass or fail.")
@click.option("--quiet", "-q", "quiet", is_flag=True,
              help="No progress on stderr; the text report is the summary alone.")
@click.option("--verbose", "-v", "verbose", is_flag=True,
              help="Progress on stderr (recipe, phase) even when it is not a terminal.")
@click.option("--kernel", "kernels", multiple=True, metavar="KERNEL",
              help="Run on KERNEL in a throwaway VM (repeatable; a bzImage, a version under /boot, a build "
                   "tree, or host): reported per kernel and side by side.")
@click.option("--jobs", "-j", "jobs", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Recipes run at once in the sandbox, each in namespaces of its own (default: 2, or 1 on "
                   "one CPU). --on-host, --then and --artifacts run them one at a time.")
def run_cmd(recipes: tuple[str, ...], run_all: bool, fmt: str, output: str | None, on_host: bool,
            sets: tuple[str, ...], recipe_dirs: tuple[str, ...], timeout: float, settle: float | None,
            then: str | None, then_in: str, iptables_flavour: str, artifacts: str | None,
            kernels: tuple[str, ...] = (), quiet: bool = False, verbose: bool = False,
            node_state: bool = False, jobs: int | None = None) -> None:
    """Build each RECIPE, verify it with real traffic, report, tear down.

    RECIPE is a name from `nsbox list`, a shell-style pattern ('bridge-*'), or a
    path to a recipe file (./my_lab.py)."""
    from nsbox import sandbox

    if not recipes and not run_all:
        raise click.UsageError("Missing argument 'RECIPES...' (or --all).")
    if node_state and artifacts is None:
        raise click.UsageError("--node-state writes into --artifacts DIR: give both.")
    if kernels:  # nsbox/vm: each kernel in a VM (or `host`), this nsbox inside; exits
        from nsbox.vm.run import RunRequest, run_kernels
        run_kernels(kernels, RunRequest(recipes, run_all, sets, recipe_dirs, timeout, settle, iptables_flavour,
                                        on_host), fmt, output, {"--then": then is not None,
                                                                "--artifacts": artifacts is not None,
                                                                "--node-state": node_state})
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
            from nsbox.sandbox.jail import EndedEarly

            try:
                labs = load_entries_jailed(recipes, parsed_sets, recipe_dirs)
            except EndedEarly as e:  # a failure with a report, as in the sandbox
                from nsbox.sandbox.result_pipe import report_ended_early

                sys.exit(report_ended_early(fmt, output, ["all" if r == ALL else r for r in recipes], e.status))
        elif not sandbox.inside():
            _check_recipe_sources(recipes, recipe_dirs)  # with the real uids, before the user namespace
            sandbox.preflight()
            from nsbox.sandbox.result_pipe import reporter

            # The report is written out here, by the supervisor: recipe code in the sandbox cannot end it.
            # Text to stdout: each recipe's section is printed as soon as its result comes.
            streamed = [0]
            sandbox.fork_into(report=reporter(fmt, output, ["all" if r == ALL else r for r in recipes],
                                              streamed=streamed, quiet=quiet),
                              on_result=_streamer(fmt, output, quiet, streamed), warm=_report_imports)
            # Only the sandbox's pid 1 gets here; the supervisor exits in fork_into.
        if not on_host:
            sandbox.setup_inside()
            labs = load_entries(recipes, parsed_sets, recipe_dirs)
        labs = _refuse_what_the_kernel_would(labs, meanwhile=_run_imports)
        _import_what_labs_need(labs)
        if then is not None:
            for lab in (x for x in labs if not isinstance(x, Refused)):
                if then_in not in lab.nodes and then_in not in lab.containers:
                    raise UsageError(f"--then-in {then_in}: no node or container {then_in!r} in {lab.name}")
    except NsboxError as e:
        _fail(e)
    _run(labs, fmt, on_host, timeout, then, artifacts, output,
         rerun_flags=_rerun_flags(on_host, timeout, recipe_dirs, settle), iptables_flavour=iptables_flavour,
         then_in=then_in, settle=settle, quiet=quiet, verbose=verbose, node_state=node_state,
         jobs=_jobs(jobs))


def _jobs(jobs: int | None) -> int:
    """--jobs, or the default: two recipes at once where there are two CPUs (a lab is mostly
    the kernel waiting, so two take little more than one), one on a single CPU."""
    return jobs if jobs is not None else min(2, os.cpu_count() or 1)


def _run_imports() -> None:
    """What building and verifying a lab import (~60 ms), done while its rules are test-loaded."""
    import importlib

    importlib.import_module("nsbox.runner")  # session, kernel.realize, verify


def _report_imports() -> None:
    """What writing the report imports (the supervisor does this while the sandbox works)."""
    import importlib

    for module in ("nsbox.report.output", "nsbox.report.text"):  # text: rich
        importlib.import_module(module)


def _streamer(fmt: str, output: str | None, quiet: bool, streamed: list[int]):
    """The text report's sections printed one by one, as each recipe finishes (to stdout
    only: a report --output FILE is written whole, once). STREAMED[0] counts them."""
    if fmt != "text" or output is not None or quiet:
        return None

    def show(result) -> None:
        from nsbox.report import text

        text.print_section(result)
        sys.stdout.flush()
        streamed[0] += 1

    return show


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
    for key, value in sorted(lab.sets.items()):
        argv += ["--set", f"{key}={value}"]
    argv += flags
    source = lab.source
    if source and "--recipes" not in flags and os.path.dirname(source) not in map(str, recipe.builtin_dirs()):
        argv += ["--recipes", os.path.dirname(source)]
    return " ".join(shlex.quote(a) for a in argv + ["--then", "bash"])


def _import_what_labs_need(labs: list) -> None:
    """The modules a protocol's server or probe imports (dns: dnslib, in a server process):
    a missing one must fail here, in one line through _Main (exit 2), before anything is built."""
    from nsbox.kinds import protocols

    used = {p for lab in labs if not isinstance(lab, Refused)
            for p in [*(getattr(c, "proto", None) for c in lab.checks),
                      *(s.kind for n in lab.nodes.values() for s in n.servers)]}
    for module in protocols.imports_for(used):
        __import__(module)


def _check_recipe_sources(names: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Trust checks of recipe directories and files (recipe.check_trusted) as the caller's
    real uid sees them: inside the unprivileged sandbox another user's files look like root's."""
    from nsbox import recipe

    recipe.extra_dirs(recipe_dirs)
    for n in names:
        if recipe.is_path(n) and os.path.isfile(n.partition(":")[0]):
            recipe.check_trusted(recipe.Path(n.partition(":")[0]), "recipe file")


def _refuse_what_the_kernel_would(labs: list, meanwhile: Callable[[], None] | None = None) -> list:
    """Sysctl keys and values, tried in a throwaway netns before anything is built
    (labs that will be skipped for a missing feature are not held to it). With several
    recipes, a refused one becomes Refused and the others go on. MEANWHILE runs while
    the rules' test-loads do (the kernel's time, not this CPU's)."""
    from nsbox.host import features
    from nsbox.kernel import firewall, sysctl

    def judge(lab, check) -> object:
        if isinstance(lab, Refused) or features.missing(frozenset(lab.requires)):
            return lab
        try:
            check(lab)
        except NsboxError as e:
            if len(labs) == 1:
                raise
            return Refused(lab.name, str(e), e.exit_code)
        return lab

    # Each lab's rules test-loaded side by side (firewall.start_batch) while the features
    # and sysctls are tried; a lab the batch refused is judged again by check_lab, node by
    # node, so its error names the node and rule (a lab about to be skipped for a missing
    # feature is in the batch too, and not judged again).
    batch = firewall.start_batch([lab for lab in labs if not isinstance(lab, Refused)])
    try:
        labs = [judge(lab, sysctl.check_lab) for lab in labs]
        if meanwhile is not None:
            meanwhile()
    finally:
        batch.accepted()  # every program has ended, whatever happened meanwhile
    # every firewall kind's test load: unknown extensions, bad target options, nft syntax
    return [judge(lab, lambda x: firewall.check_lab(x, batched=batch.accepted(x))) for lab in labs]


def _run(labs: list[Lab], fmt: str, on_host: bool, timeout: float, then: str | None,
         artifacts: str | None = None, output: str | None = None, rerun_flags: list[str] | None = None,
         iptables_flavour: str = "auto", then_in: str = "host", settle: float | None = None,
         quiet: bool = False, verbose: bool = False, node_state: bool = False, jobs: int = 1) -> None:
    # Imported here: the sandbox is entered before anything that may start threads.
    from nsbox.report import output as report_output
    from nsbox.runner import RunOptions, run_lab
    from nsbox.verify.results import RecipeResult, exit_code
    from nsbox.verify.verifier import Timing

    deadline = max(4.0, 4 * timeout) if settle is None else settle
    opts = RunOptions(on_host=on_host, timing=Timing(probe_timeout=timeout, deadline=deadline),
                      then=then, then_stdout_to_stderr=(fmt != "text" or output is not None),
                      artifacts_dir=artifacts, iptables=iptables_flavour, then_in=then_in, node_state=node_state)
    from nsbox import signals
    from nsbox.progress import Progress
    from nsbox.sandbox import result_pipe

    results = []
    refused = False
    progress = Progress(len(labs), quiet=quiet, verbose=verbose)
    opts.progress = progress.phase
    # Where each result goes as soon as it is known: down the pipe to the supervisor (which
    # prints it), or, on the host, printed here (text to stdout).
    streamed = [0]
    show = _streamer(fmt, output, quiet, streamed) if not result_pipe.claimed() else None
    result_pipe.send_plan([lab.name for lab in labs])
    interrupted: signals.Terminated | None = None
    outcomes = None
    if jobs > 1 and not on_host and then is None and artifacts is None and sum(not isinstance(x, Refused) for x in labs) > 1:
        # Several recipes in the sandbox: side by side, each in a child of its own (nsbox/side_by_side.py).
        # Progress lines name their recipe ("[3/19] pod: ..."): the children's may interleave.
        from nsbox.side_by_side import run_side_by_side

        outcomes = run_side_by_side(labs, lambda lab: run_lab(lab, opts), jobs, started=progress.start)
    try:
        for lab in labs:
            outcome = next(outcomes) if outcomes is not None else None
            if isinstance(lab, Refused):  # reported as this recipe's error; the others run
                click.echo(f"nsbox: error: {lab.name}: {lab.error}", err=True)
                results.append(RecipeResult(lab.name, "fail", error=lab.error))
                refused = True
            else:
                if outcome is None:
                    progress.start(lab.name)
                result = outcome if outcome is not None else run_lab(lab, opts)
                result.rerun = rerun_command(lab, rerun_flags or [])
                results.append(result)
            result_pipe.send_one(results[-1])
            if show is not None:
                show(results[-1])
    except NsboxError as e:
        _fail(e)
    except BaseException as e:
        # Ctrl-C, SIGTERM (`timeout 60 nsbox run --all`): the lab in hand is torn down
        # already (run_lab's finally); what finished is reported, the rest "interrupted".
        # (A Terminated can come wrapped: raised in a finalizer or a class body.)
        from nsbox.entry import _terminated_in

        if outcomes is not None:
            outcomes.close()  # the recipes still running: each tears its lab down, then ends
        t = _terminated_in(e)
        if t is None:
            raise
        interrupted = t
        results = result_pipe.finish(results, [lab.name for lab in labs], result_pipe.interrupted_text(t.signum))
    if interrupted is not None:
        sys.stderr.write("nsbox: interrupted\n")
    if result_pipe.claimed():  # in the sandbox: the supervisor reports (nsbox/sandbox/result_pipe.py)
        result_pipe.send_results(results, refused)
        _exit_after_run(interrupted.exit_code if interrupted else 2 if refused else exit_code(results))
    try:
        report_output.emit(results, fmt, output, shown=streamed[0], quiet=quiet)
    except NsboxError as e:
        _fail(e)
    # A refused recipe was bad input: exit 2 even though the others ran (their results are in the report).
    _exit_after_run(interrupted.exit_code if interrupted else 2 if refused else exit_code(results))

def _exit_after_run(code: int) -> None:
    """The report is out and every lab torn down (run_lab returned). Inside the sandbox,
    end at once: the interpreter's own shutdown (module teardown, library atexit hooks)
    took ~0.15 s and has nothing left to do, and the kernel removes whatever remains of
    the sandbox with its pid 1. Elsewhere (--on-host, a test calling main) a normal exit."""
    from nsbox import sandbox

    if sandbox.inside():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let the interpreter report a stdout it cannot write
        os._exit(code)
    sys.exit(code)


@main.command("validate")
@click.argument("recipes", nargs=-1, shell_complete=complete_recipes)
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
        labs = _refuse_what_the_kernel_would(load_entries_jailed(recipes, parse_sets(sets), recipe_dirs))
    except NsboxError as e:
        _fail(e)
    for lab in labs:
        if isinstance(lab, Refused):
            click.echo(f"nsbox: error: {lab.name}: {lab.error}", err=True)
            continue
        links = len(lab.veths) + len(lab.links) + sum(
            1 for n in lab.nodes.values() for i in n.interfaces.values() if i.kind == "bridge")
        rules = sum(len(c.rules) for n in lab.nodes.values()
                    for t in [*n.firewall.tables.values(), *n.firewall.tables6.values()] for c in t.chains.values())
        click.echo(f"ok  {lab.name}: {len(lab.nodes)} nodes, {links} links, {rules} rules, "
                   f"{len(lab.checks)} checks")
    sys.exit(2 if any(isinstance(x, Refused) for x in labs) else 0)  # a refused recipe is bad input


def _one(labs: list[Lab], name: str) -> Lab:
    if len(labs) != 1:
        raise UsageError(f"{name}: defines {len(labs)} recipes; name one as {name}:NAME")
    return labs[0]


@main.command("explain")
@click.argument("recipe", shell_complete=complete_recipes)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter, e.g. containers=3.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def explain_cmd(recipe: str, sets: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Print a bash script that rebuilds RECIPE's lab by hand (ip, sysctl, iptables-restore)."""
    from nsbox.plan.explain import script

    try:
        lab = _one(load_labs_jailed((recipe,), parse_sets(sets), recipe_dirs), recipe)
    except NsboxError as e:
        _fail(e)
    click.echo(script(lab, " ".join(["nsbox explain", recipe, *(f"--set {s}" for s in sets)])), nl=False)


@main.command("show")
@click.argument("recipe", shell_complete=complete_recipes)
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "svg", "png"]), default="text",
              show_default=True, help="svg and png are drawn by Graphviz's dot and need --output FILE.")
@click.option("--output", "output", metavar="FILE", help="Write the picture to FILE (atomically) instead of stdout.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
def show_cmd(recipe: str, fmt: str, output: str | None, sets: tuple[str, ...], recipe_dirs: tuple[str, ...]) -> None:
    """Print RECIPE's topology: nodes, interfaces, bridges, addresses, veth pairs, where NAT
    happens, forwarded ports, shared namespaces, tunnels."""
    from nsbox.plan import image
    from nsbox.plan.show import render
    from nsbox.report.output import check_output_path

    try:
        if fmt in image.IMAGE_FORMATS and not output:
            raise UsageError(f"--format {fmt} writes an image: give --output FILE")
        dot = image.dot_program() if fmt in image.IMAGE_FORMATS else None
        target = check_output_path(output, sandboxed=False) if output else None
        lab = _one(load_labs_jailed((recipe,), parse_sets(sets), recipe_dirs), recipe)
        if dot is not None:
            data = image.draw(render(lab, "dot"), fmt, dot)
        else:
            data = render(lab, fmt).encode("utf-8")
        if target is not None:
            image.write(target, data)
    except NsboxError as e:
        _fail(e)
    if target is None:
        click.echo(data.decode("utf-8"), nl=False)


# --------------------------------------------------------------------------- live labs (nsbox/live/)

@main.command("up")
@click.argument("recipe")
@click.option("--name", "name", metavar="LAB", help="The lab's name (default: the recipe's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a recipe parameter.")
@click.option("--on-host", is_flag=True, help="Build in the real host's namespaces instead of a sandbox. Needs root.")
@click.option("--recipes", "recipe_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also look for recipes in DIR.")
@click.option("--part", "part", multiple=True, metavar="NODE",
              help="Build only these machines (or nodes) of the lab: its part on this host (docs/multi-machine.md).")
@click.option("--underlay", "underlays", multiple=True, metavar="IFACE|ADDR",
              help="With --part: the host's interface (or its address) the part's wires become macvlan children of.")
def up_cmd(recipe: str, name: str | None, sets: tuple[str, ...], on_host: bool, recipe_dirs: tuple[str, ...],
           part: tuple[str, ...], underlays: tuple[str, ...]) -> None:
    """Build RECIPE's lab and keep it up: explore it with shell, exec, status and verify; end it with down."""
    from nsbox.live import commands

    try:
        sys.exit(commands.up(recipe, name, parse_sets(sets), on_host, recipe_dirs, part, underlays))
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
@click.option("--part", "part", multiple=True)
@click.option("--underlay-link", "underlay_links", multiple=True)
def holder_cmd(recipe: str, name: str, sets: tuple[str, ...], recipe_dirs: tuple[str, ...], on_host: bool,
               ctl_fd: int, ready_fd: int, part: tuple[str, ...], underlay_links: tuple[str, ...]) -> None:
    """The process that owns a live lab (started by `nsbox up`)."""
    from nsbox.live import holder, parts

    try:
        opts = holder.Options(recipe, name, on_host, parse_sets(sets), recipe_dirs, ctl_fd, ready_fd,
                              part, parts.parse_links(underlay_links))
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
@click.option("--format", "fmt", type=click.Choice(report_formats.names()), default="text",
              show_default=True, help=report_formats.help_text())
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
