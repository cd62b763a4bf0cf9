"""What `nsbox list` prints, from the catalogue's data: one function for the slow path
(nsbox.cli, the recipe jail's answer) and for the index that nsbox.fastpath serves
(nsbox.fastpath_gen renders it with this very function), so the two cannot differ.
"""

from __future__ import annotations

from typing import Any


def catalogue_data(cat: Any) -> dict:
    """The catalogue (nsbox.recipe.Catalogue) as the plain data the recipe jail's pipe carries."""
    return {"recipes": [{"name": r.name, "description": r.description, "path": r.path,
                         "params": [p.to_json() for p in r.params]} for r in cat.recipes.values()],
            "broken": cat.broken}


def render(data: dict, fmt: str) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of `nsbox list --format FMT` for DATA (catalogue_data's form)."""
    recipes = sorted(data["recipes"], key=lambda r: str(r["name"]))
    if fmt == "json":
        import json

        broken = [{"file": f, "error": e} for f, e in sorted(data["broken"].items())]
        out = json.dumps({"schema_version": 1, "recipes": recipes, "broken": broken}, indent=2) + "\n"
        return out, "", 2 if broken else 0
    width = max((len(str(r["name"])) for r in recipes), default=0)
    lines = []
    for r in recipes:
        params = " ".join(f"{p['name']}={p['default']}" for p in r["params"])
        lines.append(f"{str(r['name']).ljust(width)}  {r['description']}" + (f"  [{params}]" if params else "") + "\n")
    errors = [f"nsbox: error: {error}\n" for _path, error in sorted(data["broken"].items())]
    return "".join(lines), "".join(errors), 2 if data["broken"] else 0
