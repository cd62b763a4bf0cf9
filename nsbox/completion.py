"""Shell completion of recipe names (`eval "$(_NSBOX_COMPLETE=bash_source nsbox)"`).

Click completes commands and options by itself; a recipe argument completes with
the names read from the recipe files' source (nsbox.recipe.index: the
@recipe("NAME") decorators, parsed with ast) — no recipe code runs while a user
presses Tab, not even as root. Extra directories given with --recipes on the same
line are read too, through the same trust checks as a run; an unreadable or
untrusted one just adds no names (a completion must never print an error).
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

from nsbox.errors import NsboxError


def recipe_names(recipe_dirs: tuple[str, ...] = ()) -> list[str]:
    from nsbox import recipe

    try:
        return sorted(recipe.index(recipe_dirs).files)
    except (NsboxError, OSError):
        try:
            return sorted(recipe.index(()).files)
        except (NsboxError, OSError):
            return []


def complete_recipes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    dirs = tuple(ctx.params.get("recipe_dirs") or ())
    already = set(ctx.params.get(param.name) or ()) if param.nargs == -1 else set()
    return [CompletionItem(n) for n in recipe_names(dirs) if n.startswith(incomplete) and n not in already]
