"""Writes nsbox/_fastpath_data.py, from which nsbox.fastpath answers `nsbox --help` and `nsbox list`.

    python -m nsbox.fastpath_gen          # after changing nsbox/cli.py, a recipe, or code the recipes use

tests/unit/test_unit_fastpath.py regenerates it and fails while the checked-in file differs,
so a stale one cannot be merged; and nsbox.fastpath itself checks, at every start, the
sizes and CRC-32s recorded here against the files, so an edited checkout falls back to
the slow path.

The help is click's own rendering of nsbox.cli.main at 78 columns. The catalogue comes from
the recipe jail, as `nsbox list` gets it (recipe code runs nowhere else), in a fresh
interpreter: the nsbox modules loaded there once the recipes are, and the package's files
they opened, are what the catalogue was computed from (LIST_SOURCES). Run from a checkout
(or an installed copy) with the recipe jail available: root, or user namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nsbox import fastpath

TARGET = Path(__file__).resolve().parent / "_fastpath_data.py"
_OWN = ("nsbox.sandbox", "nsbox.fastpath")  # the jail and this generator: they compute none of it


def _collect_in_jail() -> dict:
    """In the jail: the catalogue's data, and every file that went into it."""
    from nsbox import listing, recipe
    from nsbox.sandbox import jail

    def inside() -> dict:
        opened: list[str] = []

        def hook(event: str, args: tuple) -> None:
            if event == "open" and args and isinstance(args[0], str):
                opened.append(args[0])

        sys.addaudithook(hook)  # the jail is a child that ends after this: the hook goes with it
        data = listing.catalogue_data(recipe.catalogue(()))
        modules = [m.__file__ for name, m in list(sys.modules.items())
                   if (name == "nsbox" or name.startswith(("nsbox.", "nsbox_recipe_")))
                   and not name.startswith(_OWN) and isinstance(getattr(m, "__file__", None), str)]
        return {"data": data, "files": modules + opened}

    return jail.run(inside)


def _collect() -> dict:
    """_collect_in_jail() in a fresh interpreter (only nsbox itself on sys.path, as the
    sandbox's nsbox is started): this process may have imported anything."""
    parent = str(Path(__file__).resolve().parents[1])
    code = (f"import sys, json; sys.path.insert(0, {parent!r}); from nsbox import fastpath_gen; "
            "json.dump(fastpath_gen._collect_in_jail(), sys.stdout)")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"fastpath_gen: loading the recipes in the jail failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _keys(files: list[str], recipes: str, package: str) -> list[str]:
    out = set()
    for f in files:
        real = os.path.realpath(f)
        if "/__pycache__/" in real or not os.path.isfile(real):
            continue
        if real.startswith(recipes + os.sep):
            out.add("recipes/" + os.path.relpath(real, recipes))
        elif real.startswith(package + os.sep):
            out.add("nsbox/" + os.path.relpath(real, package))
    return sorted(out)


def help_text() -> str:
    """What click prints for `nsbox --help` where it wraps at 78 columns."""
    from nsbox import cli

    with cli.main.make_context("nsbox", [], resilient_parsing=True,
                               terminal_width=fastpath.HELP_WIDTH - 2) as ctx:
        return ctx.get_help() + "\n"


def generate() -> str:
    """The text of nsbox/_fastpath_data.py for the files as they are now."""
    from nsbox import listing

    package = os.path.realpath(os.path.dirname(fastpath.__file__))
    recipes = fastpath.recipe_dir()
    if recipes is None:
        raise SystemExit("fastpath_gen: no recipe directory beside the package")
    got = _collect()
    data = got["data"]
    if data["broken"]:
        raise SystemExit(f"fastpath_gen: recipe files do not load: {data['broken']}")
    files = tuple(sorted(p.name for p in Path(recipes).glob("*.py") if not p.name.startswith("_")))
    sources = _keys(got["files"], recipes, package)
    missing = [f for f in files if f"recipes/{f}" not in sources]
    if missing:
        raise SystemExit(f"fastpath_gen: recipe files the catalogue did not load: {missing}")
    for r in data["recipes"]:
        name = os.path.basename(r["path"])
        if r["path"] != str(Path(recipes) / name):
            raise SystemExit(f"fastpath_gen: {r['path']} is not in {recipes}")
        r["path"] = f"{fastpath.RECIPE_DIR}/{name}"
    text, err, code = listing.render(data, "text")
    as_json, err2, code2 = listing.render(data, "json")
    assert (err, code, err2, code2) == ("", 0, "", 0)
    assert as_json.count(fastpath.RECIPE_DIR) == len(data["recipes"]), "the placeholder is in a recipe's text"
    helped = help_text()
    for what, value in (("help", helped), ("list", text), ("list --format json", as_json)):
        if "\x1b" in value:  # click.echo strips escapes when not on a terminal: not this path's job
            raise SystemExit(f"fastpath_gen: the {what} text holds an escape sequence")
    return "".join([
        "# Generated by `python -m nsbox.fastpath_gen` (nsbox/fastpath_gen.py): do not edit.\n",
        "# nsbox.fastpath serves `nsbox --help` and `nsbox list` from it while the files it was made from are unchanged.\n\n",
        "# the file the help was made from: (file, size, CRC-32) (fastpath.sources_unchanged)\n",
        f"HELP_SOURCES = ({fastpath.source_entry('nsbox/cli.py', recipes, package)!r},)\n\n",
        "HELP = (\n", _lines(helped), ")\n\n",
        "LIST_FILES = (\n", "".join(f"    {f!r},\n" for f in files), ")\n\n",
        "# every file the catalogue was computed from: (file, size, CRC-32) (fastpath.sources_unchanged)\n",
        "LIST_SOURCES = (\n", "".join(f"    {fastpath.source_entry(s, recipes, package)!r},\n" for s in sources),
        ")\n\n",
        "LIST_TEXT = (\n", _lines(text), ")\n\n",
        "LIST_JSON = (\n", _lines(as_json), ")\n",
    ])


def _lines(text: str) -> str:
    return "".join(f"    {line!r}\n" for line in text.splitlines(keepends=True)) or "    ''\n"


def main() -> None:
    TARGET.write_text(generate())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
