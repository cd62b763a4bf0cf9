"""`nsbox --help` and `nsbox list` in a few milliseconds: no click, no sandbox, no recipe code.

Both print what the slow path (click, and for `list` every recipe file run in the recipe
jail) printed when nsbox/_fastpath_data.py was generated (`python -m nsbox.fastpath_gen`,
which renders it with click and nsbox.listing themselves). It is served only when the
slow path would print exactly that, checked here every time:

- help: nsbox/cli.py (which defines every command and its help) has the size and CRC-32
  recorded, and click would wrap at 78 columns (COLUMNS or stdout's terminal 80 wide or more, or
  not a terminal: click's own rule, click.formatting.HelpFormatter);
- list: no --recipes and no NSBOX_RECIPE_PATH, the shipped recipe files are the ones
  recorded, and every file the catalogue was computed from (each recipe file, each nsbox
  module loading them imported, each data file they read) has the size and CRC-32
  recorded: an edited checkout falls back to the jail, never shows stale data.

Anything else, or any doubt (a marker of the sandbox in the environment, shell
completion, a file that cannot be read), returns None and the command line goes to
click as before. Nothing is written: the data is read from the package, where nsbox's
own code is. This module imports nothing beyond what the interpreter has loaded already.
"""

import os
import sys

# The sandbox's markers (nsbox.sandbox.enter.SANDBOX_ENV, result_pipe.RESULT_FD_ENV): with
# one of them present, the claim (enter.claim_from_environment) has work to do, and it
# must come before anything else: the slow path. Without them it has nothing to take.
_CLAIMS = ("NSBOX_SANDBOX", "NSBOX_RESULT_FD")
_COMPLETE_ENV = "_NSBOX_COMPLETE"  # click's shell completion (nsbox.completion): click's job
RECIPE_PATH_ENV = "NSBOX_RECIPE_PATH"  # nsbox.recipe.RECIPE_PATH_ENV
HELP_WIDTH = 80  # click wraps help to min(terminal columns, 80) - 2
RECIPE_DIR = "@NSBOX_RECIPE_DIR@"  # stands for the recipes' directory in the index's JSON
_LIST_ARGS = {("list",): "text", ("list", "--format", "text"): "text", ("list", "--format=text"): "text",
              ("list", "--format", "json"): "json", ("list", "--format=json"): "json"}


def serve(argv: list) -> "int | None":
    """Print what `nsbox ARGV` prints and return its exit code, or None: not served here."""
    if any(k in os.environ for k in _CLAIMS) or _COMPLETE_ENV in os.environ:
        return None
    try:
        from nsbox import _fastpath_data as data
    except ImportError:  # not generated (a partial copy): the slow path has it all
        return None
    args = tuple(argv)
    if args in (("--help",), ("-h",), ()):
        return _help(data, to_stderr=not args)
    fmt = _LIST_ARGS.get(args)
    if fmt is not None:
        return _list(data, fmt)
    return None


def _package_dir() -> str:
    return os.path.dirname(os.path.realpath(__file__))


def _read(path: str, size: int = -1) -> "bytes | None":
    """PATH's content; with SIZE, None unless it has exactly SIZE bytes (one read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if size < 0:
            with open(fd, "rb", buffering=0, closefd=False) as f:
                return f.read()
        content = os.read(fd, size + 1)
        return content if len(content) == size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def help_columns() -> int:
    """The columns click's help formatter sees: shutil.get_terminal_size()'s rule (COLUMNS,
    else stdout's terminal, else 80), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


def _help(data, to_stderr: bool) -> "int | None":
    if help_columns() < HELP_WIDTH:
        return None  # click wraps narrower: its text, not this one
    if not sources_unchanged(data.HELP_SOURCES, "", _package_dir()):
        return None  # nsbox/cli.py changed since
    # no arguments: click's "no args is help" prints the same text to stderr, exit 2
    return _write(sys.stderr if to_stderr else sys.stdout, data.HELP, 2 if to_stderr else 0)


def recipe_dir() -> "str | None":
    """nsbox.recipe.builtin_dirs()'s one directory, as str(Path): installed, or a checkout's."""
    here = _package_dir()
    installed = os.path.join(here, "_recipes")
    if os.path.isdir(installed):
        return installed
    checkout = os.path.join(os.path.dirname(here), "recipes")
    return checkout if os.path.isdir(checkout) else None


def source_entry(key: str, recipes: str, package: str) -> "tuple[str, int, int] | None":
    """(KEY, size, CRC-32) of the file KEY names ("recipes/NAME" in RECIPES, "nsbox/PATH" in
    PACKAGE), or None if it cannot be read."""
    from zlib import crc32

    content = _read(_path(key, recipes, package))
    return None if content is None else (key, len(content), crc32(content))


def _path(key: str, recipes: str, package: str) -> str:
    base, _, rel = key.partition("/")
    return os.path.join(recipes if base == "recipes" else package, rel)


def sources_unchanged(sources, recipes: str, package: str) -> bool:
    """Whether every (key, size, CRC-32) of SOURCES still holds. Size and CRC-32 tell an
    edited file from the one recorded (a cryptographic digest took 1.3 ms more for the
    catalogue's 700 kB): what they guard against is stale text, not an attacker. Who can change
    these files can change nsbox itself, and so could change this check."""
    from zlib import crc32

    for key, size, crc in sources:
        content = _read(_path(key, recipes, package), size)
        if content is None or crc32(content) != crc:
            return False
    return True


def _list(data, fmt: str) -> "int | None":
    if any(os.environ.get(RECIPE_PATH_ENV, "").split(":")):
        return None  # more directories: their recipes are loaded in the jail
    recipes = recipe_dir()
    if recipes is None:
        return None
    try:
        files = sorted(n for n in os.listdir(recipes) if n.endswith(".py") and not n.startswith("_"))
    except OSError:
        return None
    if tuple(files) != data.LIST_FILES:
        return None  # a recipe file added or removed since
    if not sources_unchanged(data.LIST_SOURCES, recipes, _package_dir()):
        return None  # a recipe, or the nsbox code they use, changed since
    if fmt == "text":
        return _write(sys.stdout, data.LIST_TEXT, 0)
    # The paths in the JSON: str(Path) of each file, as json.dumps writes it. A directory
    # name json.dumps would escape (non-ASCII, quote, backslash, control) is the jail's job.
    if not (recipes.isascii() and recipes.isprintable()) or '"' in recipes or "\\" in recipes:
        return None
    return _write(sys.stdout, data.LIST_JSON.replace(RECIPE_DIR, recipes), 0)


def _write(stream, text: str, code: int) -> "int | None":
    if stream is None:  # no stdout at all (python -c ... >&-): click's business
        return None
    if not text.isascii() and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
        return None  # click re-encodes for a stream it calls misconfigured (ASCII): its job
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        # As click does (its main's EPIPE branch): exit 1, and nothing more written at
        # exit to the closed pipe (no "Exception ignored" from the final flush).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return 1
    return code
