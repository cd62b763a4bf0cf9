"""Recipes: Python files that build a Lab model, found by name.

A recipe file defines one function decorated with @recipe. Its docstring's
first line is the description `nsbox list` shows; its parameters are set with
`--set KEY=VALUE`.

Loading a recipe runs its code, so this module is only ever used where that
code cannot reach the host's network: inside the sandbox, or in the recipe
jail (nsbox/sandbox/jail.py).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

from nsbox.errors import RecipeError, UsageError
from nsbox.model import Lab
from nsbox.signals import Terminated

RECIPE_PATH_ENV = "NSBOX_RECIPE_PATH"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_INT_RE = re.compile(r"^-?[0-9]+$")  # int() would also take '1_0', '+3' and other scripts' digits
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def check_name(name: Any, where: str = "") -> str:
    """Recipe names become file names (journals) and netns names: [a-z0-9][a-z0-9-]*."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RecipeError(f"{where}bad recipe name {name!r}: lower-case letters, digits and '-', "
                          f"starting with a letter or digit, at most 48")
    return name


@dataclass(frozen=True)
class Param:
    name: str
    default: int | str | bool
    help: str = ""
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] | None = None  # text parameters: the values allowed

    def parse(self, text: str) -> int | str | bool:
        kind = type(self.default)
        if self.choices is not None and text not in self.choices:
            raise UsageError(f"--set {self.name}={text}: must be one of {', '.join(self.choices)}")
        if kind is bool:
            if text.lower() in _BOOLS:
                return _BOOLS[text.lower()]
            raise UsageError(f"--set {self.name}: expected true or false, got {text!r}")
        if kind is int:
            if len(text) > 40:  # int() refuses > 4300 digits with a traceback; no parameter needs 40
                raise UsageError(f"--set {self.name}: expected an integer, got {len(text)} characters")
            if not _INT_RE.match(text):
                raise UsageError(f"--set {self.name}: expected an integer, got {text!r} (digits 0-9, optionally a leading '-')")
            value = int(text)
            if self.min is not None and self.max is not None and not self.min <= value <= self.max:
                raise UsageError(f"--set {self.name}={value}: must be between {self.min} and {self.max}")
            if self.min is not None and value < self.min:
                raise UsageError(f"--set {self.name}={value}: must be at least {self.min}")
            if self.max is not None and value > self.max:
                raise UsageError(f"--set {self.name}={value}: must be at most {self.max}")
            return value
        return text

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "type": type(self.default).__name__,
                "help": self.help, "min": self.min, "max": self.max,
                **({"choices": list(self.choices)} if self.choices is not None else {})}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build_fn: Callable[..., None]
    params: tuple[Param, ...] = ()
    path: str = field(default="", compare=False)

    @property
    def where(self) -> str:
        """file:line of the recipe function, for messages."""
        code = getattr(self.build_fn, "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code else self.path

    def build(self, overrides: dict[str, str] | None = None) -> Lab:
        """Run the recipe with defaults plus OVERRIDES (KEY -> text) into a Lab model."""
        values: dict[str, Any] = {p.name: p.default for p in self.params}
        known = {p.name: p for p in self.params}
        for key, text in (overrides or {}).items():
            if key not in known:
                choices = ", ".join(known) or "none"
                raise UsageError(f"recipe {self.name} has no parameter {key!r} (parameters: {choices})")
            values[key] = known[key].parse(text)
        lab = Lab(self.name, self.description)
        try:
            self.build_fn(lab, **values)
        except Terminated:
            raise
        except UsageError as e:
            # The model's own refusals (ValidationError) name what is wrong; add where.
            raise type(e)(f"{_where(e.__traceback__, self.where)}: {e}") from None
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... are recipe bugs too
            raise RecipeError(f"{_where(e.__traceback__, self.where)}: recipe {self.name} failed to build "
                              f"its model: {_describe(e)}") from None
        if lab.name != self.name:
            # the name makes netns and journal names; the recipe's name is the one that was checked
            raise RecipeError(f"{self.where}: recipe {self.name} renamed its lab to {lab.name!r}; "
                              "a lab keeps its recipe's name")
        if not lab.checks:
            raise RecipeError(f"{self.where}: recipe {self.name} defines no checks; "
                              "a lab that expects nothing cannot pass or fail")
        return lab


def recipe(name: str, params: list[Param] | tuple[Param, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: register FUNCTION(lab, **params) as the recipe NAME."""
    check_name(name)

    def wrap(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        fn.__nsbox_recipe__ = Recipe(name, doc[0] if doc else "", fn, tuple(params))  # type: ignore[attr-defined]
        return fn
    return wrap


def builtin_dirs() -> list[Path]:
    """Where nsbox's own recipes are: installed with the package, or in a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "_recipes"
    if installed.is_dir():
        return [installed]
    # A source checkout (or an editable install): recipes/ beside the package.
    # Never looked at when nsbox is installed: site-packages/recipes is not ours.
    checkout = here.parent / "recipes"
    return [checkout] if checkout.is_dir() else []


def extra_dirs(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """--recipes DIRs, then NSBOX_RECIPE_PATH's: each must exist and be trusted (check_trusted)."""
    dirs = [Path(d) for d in extra]
    for d in os.environ.get(RECIPE_PATH_ENV, "").split(":"):
        if not d:
            continue
        if not os.path.isabs(d):
            # It would name a different directory in every working directory: code from
            # wherever the caller happens to stand would run.
            raise UsageError(f"{RECIPE_PATH_ENV} entry {d!r} is relative; use absolute directories")
        dirs.append(Path(d))
    out = []
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"recipe directory {str(d)!r} does not exist or is not a directory")
        # resolved once: a symlink someone else may swap is followed here, never again
        out.append(check_trusted(d, "recipe directory"))
    return out


def _trusted_owners() -> set[int]:
    """Root and the caller. In the unprivileged sandbox the real root is the overflow uid
    (so is every unmapped user: the caller's side checked those before entering it)."""
    from nsbox.tools import _root_uids

    return {os.geteuid(), *_root_uids()}


def check_trusted(path: Path, what: str) -> Path:
    """Refuse to run code from PATH unless only root or the caller can change it: PATH and
    every directory above it owned by one of them and writable by no one else (a sticky
    directory such as /tmp may be: nobody can rename another's entry there). The same
    rule as journals in /run/nsbox and OpenSSH's StrictModes. Returns PATH resolved
    (symlinks followed), the path to use from then on."""
    owners = _trusted_owners()
    p = Path(os.path.realpath(path))
    try:
        st = os.stat(p)
    except OSError as e:
        raise UsageError(f"{what} {str(p)!r}: {e.strerror}") from None
    if st.st_uid not in owners:
        raise UsageError(f"{what} {p} is owned by uid {st.st_uid}, neither root nor you: "
                         "nsbox does not run code another user can change")
    if st.st_mode & 0o022:
        raise UsageError(f"{what} {p} is group- or world-writable: nsbox does not run code "
                         "another user can change (chmod go-w)")
    for parent in p.parents:
        try:
            pst = os.stat(parent)
        except OSError as e:
            raise UsageError(f"{what} {p}: {parent}: {e.strerror}") from None
        if pst.st_uid not in owners or (pst.st_mode & 0o022 and not pst.st_mode & 0o1000):
            raise UsageError(f"{what} {p} lies in {parent}, which another user can change "
                             "(owned by them, or group/world-writable and not sticky)")
    return p


@dataclass
class Catalogue:
    """Every recipe found, and every file that failed to load (it hides nothing else)."""

    recipes: dict[str, Recipe] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # file -> one-line error


def discover(extra: list[str] | tuple[str, ...] = ()) -> dict[str, Recipe]:
    return catalogue(extra).recipes


def catalogue(extra: list[str] | tuple[str, ...] = ()) -> Catalogue:
    """Load every recipe file (`nsbox list`, doctor): runs them all, so every directory
    passed check_trusted (extra_dirs)."""
    found = Catalogue()
    builtin = builtin_dirs()
    # A source checkout and the installed copy may both be present: the first wins, silently.
    seen_builtin: set[str] = set()
    for d in builtin:
        for r in _load_dir(d, found):
            if r.name not in seen_builtin:
                seen_builtin.add(r.name)
                found.recipes[r.name] = r
    for d in extra_dirs(extra):
        for r in _load_dir(d, found):
            if r.name in found.recipes:
                other = found.recipes[r.name]
                raise UsageError(f"recipe {r.name} in {r.path} has the name of the recipe in {other.path}; "
                                 "rename one (a recipe may not replace another)")
            found.recipes[r.name] = r
    return found


def _load_dir(d: Path, found: Catalogue) -> list[Recipe]:
    out = []
    for path in sorted(d.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            out += _load(path if d in builtin_dirs() else check_trusted(path, "recipe file"))
        except UsageError as e:  # RecipeError, or a file another user can change: listed, hides nothing else
            found.broken[str(path)] = str(e)
    return out


@dataclass
class Index:
    """Recipe names -> the file that defines each, read without running any file."""

    files: dict[str, Path] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # file -> why its names cannot be read


def index(extra: list[str] | tuple[str, ...] = ()) -> Index:
    """Which file defines which recipe, from the @recipe("NAME") decorators in the source
    (ast): running a recipe loads its own file and no other."""
    found = Index()
    for d in builtin_dirs():
        for path in sorted(d.glob("*.py")):
            if not path.name.startswith("_"):
                for name in _names_in(path, found):
                    found.files.setdefault(name, path)
    builtin = set(found.files)
    for d in extra_dirs(extra):
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for name in _names_in(path, found):
                if name in found.files:
                    kind = "the shipped recipe" if name in builtin else "the recipe"
                    raise UsageError(f"recipe {name} in {path} has the name of {kind} in {found.files[name]}; "
                                     "rename one (a recipe may not replace another)")
                found.files[name] = path
    return found


def _names_in(path: Path, found: Index) -> list[str]:
    try:
        return static_names(path)
    except RecipeError as e:
        found.broken[str(path)] = str(e)
        return []


def static_names(path: Path) -> list[str]:
    """The names of @recipe("NAME", ...) / @recipe(name="NAME") decorators in PATH's source."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError) as e:
        line = getattr(e, "lineno", None)
        raise RecipeError(f"{path}" + (f":{line}" if line else "") + f": cannot load recipe file: "
                          f"{type(e).__name__}: {' '.join(str(getattr(e, 'msg', e)).split())}") from None
    except (OSError, RecursionError, MemoryError) as e:
        raise RecipeError(f"{path}: cannot read recipe file: {type(e).__name__}") from None
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if not isinstance(deco, ast.Call):
                continue
            func = deco.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called != "recipe":
                continue
            arg = deco.args[0] if deco.args else next((k.value for k in deco.keywords if k.arg == "name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(check_name(arg.value, f"{path}:{deco.lineno}: "))
    return names


def _shipped_file(name: str) -> Path | None:
    """The shipped recipe NAME's own file, read alone: bridge-mode is in bridge_mode.py
    (a unit test holds every shipped recipe to that). index() parses every recipe file
    (~20 ms of `nsbox run bridge-mode`); with no --recipes DIR no other file can define
    NAME, so one is enough. None: look it up in the whole index."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return None
    for d in builtin_dirs():
        path = d / (name.replace("-", "_") + ".py")
        try:
            if path.is_file() and name in static_names(path):
                return path
        except RecipeError:
            return None
    return None


def is_path(name: str) -> bool:
    """A recipe FILE.py or FILE.py:NAME rather than a recipe name (names have no '.')."""
    return name.partition(":")[0].endswith(".py")


def get(name: str, extra: list[str] | tuple[str, ...] = ()) -> Recipe:
    if is_path(name):
        found = get_file(name)
        if len(found) != 1:
            raise RecipeError(f"{name}: defines {len(found)} recipes; name one as {name}:NAME")
        return found[0]
    path = None if extra_dirs(extra) else _shipped_file(name)  # NSBOX_RECIPE_PATH counts too
    if path is not None:
        for r in _load(path):
            if r.name == name:
                return r
    idx = index(extra)
    path = idx.files.get(name)
    if path is None:
        close = difflib.get_close_matches(name, list(idx.files), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(idx.files))}"
        if idx.broken:
            raise RecipeError(f"unknown recipe {name!r}{hint}; these recipe files did not load: "
                              + "; ".join(idx.broken.values()))
        raise UsageError(f"unknown recipe {name!r}{hint}")
    if path.parent not in builtin_dirs():
        path = check_trusted(path, "recipe file")
    for r in _load(path):
        if r.name == name:
            return r
    raise RecipeError(f"{path}: names recipe {name} in its source, but defines no recipe of that name when run")


def get_file(path: str) -> list[Recipe]:
    """`nsbox run ./file.py`: every recipe that file defines; `./file.py:NAME`: that one."""
    file, _, name = path.partition(":")
    p = Path(file)
    if not p.is_file():
        raise UsageError(f"recipe file {file!r} does not exist")
    recipes = _load(check_trusted(p, "recipe file"))
    if name:
        recipes = [r for r in recipes if r.name == name]
        if not recipes:
            raise UsageError(f"{file} defines no recipe {name!r}")
    return recipes


def _load(path: Path) -> list[Recipe]:
    mod_name = f"nsbox_recipe_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Terminated:
        raise
    except BaseException as e:  # noqa: BLE001 - a recipe that exits or raises anything is broken
        raise RecipeError(f"{_where(e.__traceback__, str(path))}: cannot load recipe file: {_describe(e)}") from None
    out = []
    for obj in vars(module).values():
        r = getattr(obj, "__nsbox_recipe__", None)
        if isinstance(r, Recipe):
            out.append(Recipe(r.name, r.description, r.build_fn, r.params, str(path)))
    if not out:
        raise RecipeError(f"{path}: defines no recipe (decorate a function with @recipe(NAME))")
    return out


def _where(tb: TracebackType | None, fallback: str) -> str:
    """file:line of the innermost frame of the recipe's own code (not nsbox's)."""
    nsbox_dir = str(Path(__file__).resolve().parent) + os.sep
    shipped = nsbox_dir + "_recipes" + os.sep  # the installed recipes live inside the package
    best = None
    for frame in traceback.extract_tb(tb):
        own = frame.filename.startswith(nsbox_dir) and not frame.filename.startswith(shipped)
        if not own and not frame.filename.startswith("<"):
            best = f"{frame.filename}:{frame.lineno}"
    return best or fallback


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
