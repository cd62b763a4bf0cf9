"""`nsbox doctor`: what this machine offers, what each recipe needs, which can run.

Three kinds of answer are kept apart, because they have different fixes:
  present   the kernel (or the tool) is there;
  missing   the kernel refused, or an optional tool is not installed: recipes that
            need it SKIP (fix: another kernel, a module, apt install ...);
  broken    nsbox's own installation is broken (a library that does not load, a
            program nsbox runs that is absent): nothing runs (fix: install it).
  unknown   could not be checked here (e.g. no root and no user namespaces).

Exit 0 when nsbox itself is usable, 2 when its installation is broken.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

from nsbox import __version__, tools
from nsbox.errors import REINSTALL, InstallError, NsboxError, missing_module
from nsbox.model import Lab
from nsbox.model.lab import FEATURES

State = Literal["present", "missing", "broken", "unknown"]


@dataclass(frozen=True)
class Item:
    name: str
    state: State
    detail: str = ""     # version, path, or why it is missing / broken
    fix: str = ""        # what to do about it, when it is not present
    needed_by: str = ""


@dataclass(frozen=True)
class RecipeStatus:
    name: str
    requires: list[str]
    can_run: bool
    reason: str


@dataclass
class Report:
    python: list[Item] = field(default_factory=list)
    install: list[Item] = field(default_factory=list)  # nsbox's own files: its modules, its shipped recipes
    features: list[Item] = field(default_factory=list)
    tools: list[Item] = field(default_factory=list)
    recipes: list[RecipeStatus] = field(default_factory=list)
    sandbox: str = ""    # "" when the sandbox can be entered, else why not
    root: bool = False

    @property
    def broken(self) -> list[Item]:
        return [i for i in self.python + self.install + self.features + self.tools if i.state == "broken"]

    @property
    def usable(self) -> bool:
        return not self.broken

    def to_json(self) -> dict:
        return {"nsbox": {"version": __version__, "python": sys.executable, "root": self.root,
                          "usable": self.usable, "sandbox": self.sandbox or "available",
                          "broken": [f"{i.name}: {i.detail}" for i in self.broken]},
                "python_packages": [asdict(i) for i in self.python],
                "install": [asdict(i) for i in self.install],
                "features": [asdict(i) for i in self.features],
                "tools": [asdict(i) for i in self.tools],
                "recipes": [asdict(r) for r in self.recipes]}


# --------------------------------------------------------------------------- python packages

def _python_packages() -> list[Item]:
    out = []
    for module, pip in (("pyroute2", "pyroute2"), ("click", "click"), ("rich", "rich")):
        try:
            __import__(module)
            out.append(Item(pip, "present", _dist_version(pip)))
        except ImportError as e:
            err = missing_module(e) or InstallError(str(e))
            out.append(Item(pip, "broken", str(err), f"pip install {pip}, {REINSTALL}", "nsbox"))
    from nsbox.host.programs import _iptc
    try:
        iptc = _iptc()
        out.append(Item("python-iptables", "present", f"libxtables {iptc.xtables.xtables_version}"))
    except InstallError as e:
        out.append(Item("python-iptables", "broken", str(e), f"apt install iptables, {REINSTALL}", "nsbox"))
    return out


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


# --------------------------------------------------------------------------- nsbox's own files

FIX_INSTALL = f"pip install --force-reinstall nsbox, {REINSTALL}"

def _nsbox_modules() -> Item:
    """Every nsbox module that nsbox's own code or a shipped recipe imports can be found.

    Read from the import statements (not by importing everything), so a subpackage left out of
    an install is found even when only a command that is not run here imports it lazily
    (`nsbox explain` needs nsbox.plan, every shipped recipe nsbox.kits)."""
    import nsbox
    from nsbox import recipe
    package = Path(nsbox.__file__).resolve().parent
    files = sorted(package.rglob("*.py")) + [f for d in recipe.builtin_dirs() for f in sorted(d.glob("*.py"))]
    missing: dict[str, str] = {}
    for f in files:
        try:
            tree = ast.parse(f.read_bytes(), str(f))
        except (OSError, SyntaxError, ValueError) as e:
            missing[str(f)] = f"does not parse: {e}"
            continue
        for name in sorted(_nsbox_imports(tree)):
            dotted = name.replace(":", ".")
            # one line per missing module: nsbox.kits missing says nsbox.kits.docker is too
            if any(dotted == m or dotted.startswith(m + ".") for m in missing) or _module_exists(name):
                continue
            missing[dotted] = str(f.relative_to(package.parent) if f.is_relative_to(package.parent) else f)
    if missing:
        shown = "; ".join(f"{m} (imported by {by})" for m, by in list(missing.items())[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return Item("nsbox modules", "broken", f"not installed: {shown}{more}", FIX_INSTALL, "nsbox")
    return Item("nsbox modules", "present", f"{len(files)} files (nsbox and its shipped recipes), every nsbox import found")


def _nsbox_imports(tree: ast.AST) -> set[str]:
    """The nsbox modules a file names: `import nsbox.x`, `from nsbox.x import y` (nsbox.x, and
    nsbox.x.y when y is not defined in nsbox.x itself: checked by _module_exists)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == "nsbox" or a.name.startswith("nsbox.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "nsbox" or node.module.startswith("nsbox.")):
            out.add(node.module)
            out |= {f"{node.module}:{a.name}" for a in node.names if a.name != "*"}
    return out


def _module_exists(name: str) -> bool:
    """NAME is a module, or "MODULE:ATTR" where ATTR is a submodule or a name MODULE defines."""
    module, _, attr = name.partition(":")
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - a parent package that fails to import: the recipes line says why
        return True
    if not attr:
        return True
    try:
        if importlib.util.find_spec(f"{module}.{attr}") is not None:
            return True
    except Exception:  # noqa: BLE001 - MODULE is a plain module (no submodules): ATTR is a name in it
        pass
    try:  # a function or constant, not a submodule: the module must define it
        return hasattr(importlib.import_module(module), attr)
    except Exception:  # noqa: BLE001 - the module is there but does not import: the recipes line says why
        return True


def _shipped_recipes(built: list[BuiltRecipe]) -> Item:
    """The recipes nsbox ships must all load and build: one that does not is a broken install
    (a module it imports is missing), not a recipe that merely cannot run on this kernel."""
    from nsbox import recipe
    where = ", ".join(str(d) for d in recipe.builtin_dirs()) or "nowhere"
    shipped = [b for b in built if b.shipped]
    bad = [b for b in shipped if b.lab is None]
    if bad:
        return Item("shipped recipes", "broken", f"{len(bad)} of {len(shipped)} do not load or build "
                    f"({', '.join(b.name for b in bad)}); the first: {bad[0].error}",
                    FIX_INSTALL, "nsbox")
    if not shipped:
        return Item("shipped recipes", "broken", f"none found (looked in {where})", FIX_INSTALL, "nsbox")
    return Item("shipped recipes", "present", f"{len(shipped)} load and build ({where})")


# --------------------------------------------------------------------------- tools

# tool -> (version argument, apt package, who needs it, whether nsbox itself cannot work without it)
TOOLS: dict[str, tuple[str, str, str, bool]] = {
    "unshare": ("--version", "util-linux", "nsbox: enters the sandbox", True),
    "setpriv": ("--version", "util-linux", "nsbox: ties the sandbox to its parent", True),
    "nsenter": ("--version", "util-linux", "nsbox: --then, the pytest plugin's exec", True),
    "ip": ("-V", "iproute2", "you and the tests: looking at a lab", False),
    "iptables-legacy": ("-V", "iptables", "you and the tests: reading the rules nsbox writes (legacy backend)", False),
    "iptables-nft": ("-V", "iptables", "the tests: checking nothing lands in nf_tables", False),
    "nft": ("--version", "nftables", "you: nf_tables rulesets", False),
    "conntrack": ("--version", "conntrack", "you and the tests: reading conntrack tables", False),
    "tcpdump": ("--version", "tcpdump", "you: watching packets in a lab", False),
}


def _tools() -> list[Item]:
    out = []
    for tool, (flag, apt, needed_by, essential) in TOOLS.items():
        fix = f"apt install {apt}"
        path = tools.find(tool)  # where nsbox itself looks: system directories only
        if path is None:
            out.append(Item(tool, "broken" if essential else "missing", "not on PATH", fix, needed_by))
            continue
        try:
            cp = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
            ok, said = cp.returncode == 0, (cp.stdout or cp.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, said = False, str(e)
        first = said.splitlines()[0] if said else ""
        if ok:
            out.append(Item(tool, "present", f"{path}: {first}", "", needed_by))
        else:
            # on PATH but does not run (a missing shared library, a wrong architecture): broken
            out.append(Item(tool, "broken" if essential else "missing", f"{path} does not run: {first}",
                            f"apt install --reinstall {apt}", needed_by))
    return out


# --------------------------------------------------------------------------- kernel features

# How a feature is shown in the text table (JSON keeps the short name a recipe requires).
FEATURE_LABELS = {"vlan": "vlan (802.1q)", "nat": "nat (iptables legacy)", "iptables-nft": "iptables-nft (nf_tables)",
                  "nft": "nft (nf_tables)"}


def _kernel_features() -> list[Item]:
    """Every probe runs in a scratch netns, in a forked child: as root directly, otherwise in a
    user namespace of its own (where the kernel allows one), so doctor needs no sudo to answer."""
    # Looked up before the child enters a user namespace, where root's files show as nobody's.
    paths = {t: tools.find(t) for t in ("iptables-nft", "nft")}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            items = _probe_in_child(paths)
            payload = json.dumps([asdict(i) for i in items]).encode()
        except BaseException as e:  # report, never unwind into the parent's code
            payload = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode()
        with os.fdopen(write, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = json.loads(f.read() or b'{"error": "the probing child died"}')
    os.waitpid(pid, 0)
    if isinstance(data, dict):
        return [Item(f, "unknown", data["error"]) for f in FEATURES]
    return [Item(**d) for d in data]


CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


def _probe_in_child(paths: dict[str, str | None]) -> list[Item]:
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        libc = ctypes.CDLL(None, use_errno=True)
        # a netns of our own too: scratch() must be able to setns back to where it started
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            why = os.strerror(ctypes.get_errno())
            return [Item(f, "unknown", f"cannot probe without root or a user namespace ({why})",
                         "run nsbox doctor as root") for f in ("netns", *FEATURES)]
        # root inside (what `unshare --map-root-user` does): tools such as iptables-nft insist on uid 0
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                           ("/proc/self/gid_map", f"0 {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
    from nsbox.host import features, netns
    out = []
    try:
        with netns.scratch():
            pass
        out.append(Item("netns", "present", "unshare(CLONE_NEWNET)"))
    except NsboxError as e:
        out.append(Item("netns", "missing", str(e), "a kernel with CONFIG_NET_NS"))
    for f in FEATURES:
        st = features.status(f)
        fix = {"present": "", "broken": f"see the message; {REINSTALL}"}.get(st.state, _feature_fix(f))
        out.append(Item(f, st.state, st.reason, fix))
    out += [_nf_tables("iptables-nft", paths["iptables-nft"], ["-t", "nat", "-S"]),
            _nf_tables("nft", paths["nft"], ["list", "ruleset"])]
    return out


def _feature_fix(feature: str) -> str:
    if feature == "vlan_filtering":  # built into the bridge module or not: no module to load
        return "a kernel built with CONFIG_BRIDGE_VLAN_FILTERING"
    module = {"vlan": "8021q", "nat": "iptable_nat", "conntrack": "nf_conntrack"}.get(feature, feature)
    return f"modprobe {module}, or a kernel built with it"


def _nf_tables(label: str, path: str | None, args: list[str]) -> Item:
    """Whether the kernel takes nf_tables requests, asked with the tool in a scratch netns."""
    from nsbox.host import netns
    if path is None:
        return Item(label, "unknown", f"{label} is not installed, so this was not checked",
                    f"apt install {TOOLS[label][1]}")
    with netns.scratch():  # a child process starts in the netns of the thread that forks it
        cp = subprocess.run([path, *args], capture_output=True, text=True, timeout=10)
    if cp.returncode == 0:
        return Item(label, "present")
    return Item(label, "missing", (cp.stderr.strip().splitlines() or [f"exit {cp.returncode}"])[0],
                "modprobe nf_tables, or a kernel built with it")


def _host_facts() -> list[Item]:
    """What is read from the host's /proc rather than probed: user namespaces, br_netfilter."""
    from nsbox import sandbox
    out = []
    knobs = {k: _read(p) for k, p in (
        ("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
        ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone"),
        ("kernel.apparmor_restrict_unprivileged_userns", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"))}
    shown = ", ".join(f"{k}={v}" for k, v in knobs.items() if v is not None)
    try:
        sandbox.preflight()  # the same checks (and the same real try) as `nsbox run`
        out.append(Item("user namespaces", "present", shown))
    except NsboxError as e:
        out.append(Item("user namespaces", "missing", f"{e} [{shown}]", "run as root, or use --on-host as root"))
    if os.path.isdir("/proc/sys/net/bridge"):
        out.append(Item("br_netfilter", "present", "/proc/sys/net/bridge exists"))
    else:
        out.append(Item("br_netfilter", "missing", "no /proc/sys/net/bridge (module not loaded)",
                        "modprobe br_netfilter"))
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# --------------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class BuiltRecipe:
    name: str
    lab: Lab | None
    error: str = ""
    shipped: bool = False  # one of nsbox's own recipes (recipe.builtin_dirs)


def build_recipe_labs(recipe_dirs: tuple[str, ...] = ()) -> list[BuiltRecipe]:
    """Every discoverable recipe's lab, built with its defaults (its requires are known only then).

    This is the one place doctor runs recipe code, and it does so in the recipe jail
    (a forked child with its own netns and no capabilities); the labs come back as data."""
    from nsbox.model.serialize import lab_from_dict
    from nsbox.sandbox import jail
    try:
        data = jail.run(lambda: _build_all(recipe_dirs))
    except NsboxError as e:
        return [BuiltRecipe("(recipes)", None, str(e))]
    out = []
    for d in data:
        try:
            out.append(BuiltRecipe(d["name"], lab_from_dict(d["lab"]) if d["lab"] else None, d["error"],
                                   d.get("shipped", False)))
        except NsboxError as e:
            out.append(BuiltRecipe(d["name"], None, str(e), d.get("shipped", False)))
    return out


def _build_all(recipe_dirs: tuple[str, ...]) -> list[dict]:
    """In the jail: load, build and validate every recipe, one entry each (a broken file is one too)."""
    from nsbox import recipe
    from nsbox.model.serialize import lab_to_dict
    from nsbox.session import load_and_validate
    cat = recipe.catalogue(recipe_dirs)
    builtin = {str(d.resolve()) for d in recipe.builtin_dirs()}

    def shipped(path: str) -> bool:
        return str(Path(path).resolve().parent) in builtin
    out = [{"name": os.path.basename(path), "lab": None, "error": error, "shipped": shipped(path)}
           for path, error in sorted(cat.broken.items())]
    for name in sorted(cat.recipes):
        is_shipped = shipped(cat.recipes[name].path) if cat.recipes[name].path else False
        try:
            lab = load_and_validate(cat.recipes[name].build)  # the load step of every LabSession
            out.append({"name": name, "lab": lab_to_dict(lab), "error": "", "shipped": is_shipped})
        except NsboxError as e:
            out.append({"name": name, "lab": None, "error": str(e), "shipped": is_shipped})
    return out


def _recipes(built: list[BuiltRecipe], features: list[Item], sandbox_problem: str, root: bool) -> list[RecipeStatus]:
    by_name = {i.name: i for i in features}
    out = []
    for b in built:
        if b.lab is None:
            out.append(RecipeStatus(b.name, [], False, f"does not build: {b.error}"))
            continue
        needs = sorted(b.lab.requires)
        lacking = [by_name[f] for f in needs if by_name.get(f) and by_name[f].state != "present"]
        if any(i.state == "broken" for i in lacking):
            out.append(RecipeStatus(b.name, needs, False, "nsbox's installation is broken (see BROKEN above)"))
        elif lacking:
            out.append(RecipeStatus(b.name, needs, False, "; ".join(
                f"{i.name} {i.state}" + (f": {i.detail}" if i.detail else "") for i in lacking)))
        elif sandbox_problem and not root:
            out.append(RecipeStatus(b.name, needs, False, f"no sandbox here ({sandbox_problem}) and not root"))
        elif sandbox_problem:
            out.append(RecipeStatus(b.name, needs, True, "with --on-host only: the sandbox is not available"))
        else:
            out.append(RecipeStatus(b.name, needs, True, "ready"))
    return out


# --------------------------------------------------------------------------- the whole report

def examine(recipe_dirs: tuple[str, ...] = (), build: Callable[..., list[BuiltRecipe]] = build_recipe_labs) -> Report:
    report = Report(root=os.geteuid() == 0)
    report.python = _python_packages()
    report.tools = _tools()
    built = build(recipe_dirs)
    report.install = [_nsbox_modules(), _shipped_recipes(built)]
    host = _host_facts()
    report.sandbox = next((i.detail for i in host if i.name == "user namespaces" and i.state != "present"), "")
    report.features = host + [_blame(i, report.python) for i in _kernel_features()]
    report.recipes = _recipes(built, report.features, report.sandbox, report.root)
    return report


def _blame(item: Item, packages: list[Item]) -> Item:
    """A probe that could not run because a package is broken says so in a few words:
    the package's own line has the full message and the fix."""
    culprit = next((p for p in packages if p.state == "broken" and p.detail == item.detail), None)
    if item.state != "broken" or culprit is None:
        return item
    return Item(item.name, "broken", f"not probed: {culprit.name} is broken (see Python packages)", culprit.fix)


MARK = {"present": "ok", "missing": "--", "broken": "BROKEN", "unknown": "??"}


def render_text(r: Report) -> str:
    lines = [f"nsbox {__version__} ({sys.executable}){'' if r.root else ', not root'}"]
    for title, items, labels in (("Python packages", r.python, {}), ("nsbox's own files", r.install, {}),
                                 ("Kernel features", r.features, FEATURE_LABELS),
                                 ("Tools", r.tools, {})):
        lines.append(f"\n{title}")
        width = max((len(labels.get(i.name, i.name)) for i in items), default=0)
        for i in items:
            text = f"  {MARK[i.state]:6} {labels.get(i.name, i.name).ljust(width)}  {i.detail}"
            if i.fix and i.state != "present":
                text += f"  [fix: {i.fix}]"
            lines.append(text.rstrip())
    lines.append("\nRecipes")
    width = max((len(x.name) for x in r.recipes), default=0)
    for x in r.recipes:
        lines.append(f"  {'ok' if x.can_run else '--':6} {x.name.ljust(width)}  "
                     f"needs {', '.join(x.requires) or 'nothing'}: {x.reason}")
    if r.usable:
        lines.append("\nnsbox is usable here.")
    else:
        # the packages and tools are the cause; features they kept from being probed follow from them
        causes = [i for i in r.python + r.install + r.tools if i.state == "broken"] or r.broken
        lines.append(f"\nnsbox's installation is broken: {', '.join(i.name for i in causes)} (see BROKEN above).")
    return "\n".join(lines)


def main(fmt: str, recipe_dirs: tuple[str, ...]) -> int:
    """Print the report; the exit code is 0 when nsbox is usable here, 2 when its install is broken."""
    report = examine(recipe_dirs)
    print(json.dumps(report.to_json(), indent=2) if fmt == "json" else render_text(report))
    return 0 if report.usable else 2
