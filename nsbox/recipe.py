"""Recipes: Python files that build a Lab model, found by name.

A recipe file defines one function decorated with @recipe. Its docstring's
first line is the description `nsbox list` shows; its parameters are set with
`--set KEY=VALUE`.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nsbox.errors import RecipeError, UsageError
from nsbox.model import Lab

RECIPE_PATH_ENV = "NSBOX_RECIPE_PATH"


@dataclass(frozen=True)
class Param:
    name: str
    default: int | str | bool
    help: str = ""
    min: int | None = None
    max: int | None = None

    def parse(self, text: str) -> int | str | bool:
        kind = type(self.default)
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise UsageError(f"--set {self.name}: expected true or false, got {text!r}")
        if kind is int:
            try:
                value = int(text)
            except ValueError:
                raise UsageError(f"--set {self.name}: expected an integer, got {text!r}") from None
            if self.min is not None and self.max is not None and not self.min <= value <= self.max:
                raise UsageError(f"--set {self.name}={value}: must be between {self.min} and {self.max}")
            if self.min is not None and value < self.min:
                raise UsageError(f"--set {self.name}={value}: must be at least {self.min}")
            if self.max is not None and value > self.max:
                raise UsageError(f"--set {self.name}={value}: must be at most {self.max}")
            return value
        return text


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build_fn: Callable[..., None]
    params: tuple[Param, ...] = ()
    path: str = field(default="", compare=False)

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
        except UsageError:
            raise
        except Exception as e:
            raise RecipeError(f"recipe {self.name} failed to build its model: {type(e).__name__}: {_one_line(e)}") from None
        return lab


def recipe(name: str, params: list[Param] | tuple[Param, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: register FUNCTION(lab, **params) as the recipe NAME."""
    def wrap(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        fn.__nsbox_recipe__ = Recipe(name, doc[0] if doc else "", fn, tuple(params))  # type: ignore[attr-defined]
        return fn
    return wrap


def recipe_dirs(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Where recipes are looked up, first match wins."""
    dirs = [Path(d) for d in extra]
    dirs += [Path(d) for d in os.environ.get(RECIPE_PATH_ENV, "").split(":") if d]
    here = Path(__file__).resolve().parent
    dirs.append(here / "_recipes")          # installed with the package
    dirs.append(here.parent / "recipes")    # a source checkout
    return [d for d in dirs if d.is_dir()]


def discover(extra: list[str] | tuple[str, ...] = ()) -> dict[str, Recipe]:
    found: dict[str, Recipe] = {}
    for d in recipe_dirs(extra):
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for r in _load(path):
                found.setdefault(r.name, r)
    return found


def get(name: str, extra: list[str] | tuple[str, ...] = ()) -> Recipe:
    recipes = discover(extra)
    if name in recipes:
        return recipes[name]
    close = difflib.get_close_matches(name, list(recipes), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(recipes))}"
    raise UsageError(f"unknown recipe {name!r}{hint}")


def _load(path: Path) -> list[Recipe]:
    mod_name = f"nsbox_recipe_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise RecipeError(f"cannot load recipe file {path}: {type(e).__name__}: {_one_line(e)}") from None
    out = []
    for obj in vars(module).values():
        r = getattr(obj, "__nsbox_recipe__", None)
        if isinstance(r, Recipe):
            out.append(Recipe(r.name, r.description, r.build_fn, r.params, str(path)))
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
