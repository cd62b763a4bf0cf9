"""`nsbox --help` and `nsbox list` from nsbox.fastpath: the same bytes as click and the recipe jail.

Every comparison runs both paths as programs: the fast one as a user runs it
(`python -m nsbox ...`), the slow one as nsbox did before (click's main, the recipe
jail), with real stdout/stderr (a pipe, or a pseudo-terminal of a given width). Which path
answered is observed from outside, in `-X importtime`'s list of the modules the process
loaded (click or the jail there: the slow path), not from nsbox's word.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from nsbox import _fastpath_data as data
from nsbox import fastpath, fastpath_gen
from tests.support.paths import REPO

# The slow path of `list` is the recipe jail (a network namespace: root, or user namespaces),
# as for tests/unit/test_unit_cli.py's `list --recipes` tests.


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "NSBOX_RECIPE_PATH", "NSBOX_SANDBOX", "NSBOX_RESULT_FD", "_NSBOX_COMPLETE")}
    return {**env, **extra}


def fast(*args: str, root: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """`nsbox ARGS` as the user runs it (entry.main), from ROOT's nsbox."""
    code = f"import sys; sys.path.insert(0, {str(root)!r}); from nsbox.entry import main; main()"
    return subprocess.run([sys.executable, "-I", "-c", code, *args], cwd=root, env=_env(**env),
                          capture_output=True, text=True, timeout=60)


def slow(*args: str, root: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """`nsbox ARGS` by click, as before the fast path: the recipe jail for `list`."""
    code = (f"import sys; sys.path.insert(0, {str(root)!r}); from nsbox.cli import main; "
            f"main({list(args)!r}, prog_name='nsbox')")
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=root, env=_env(**env),
                          capture_output=True, text=True, timeout=60)


def loaded(*args: str, root: Path = REPO, **env: str) -> set[str]:
    """The modules `nsbox ARGS` imported (-X importtime's report on stderr)."""
    code = f"import sys; sys.path.insert(0, {str(root)!r}); from nsbox.entry import main; main()"
    cp = subprocess.run([sys.executable, "-I", "-X", "importtime", "-c", code, *args], cwd=root,
                        env=_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
    return {ln.rsplit("|", 1)[1].strip() for ln in cp.stderr.splitlines() if ln.startswith("import time:")}


def _same(a: subprocess.CompletedProcess, b: subprocess.CompletedProcess) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


# ------------------------------------------------------------------------------------ the index

def test_the_index_is_what_the_generator_writes_now():
    """Stale after a change to nsbox/cli.py, a recipe, or code the recipes use:
    run `python -m nsbox.fastpath_gen` and commit nsbox/_fastpath_data.py."""
    assert fastpath_gen.generate() == fastpath_gen.TARGET.read_text(), \
        "nsbox/_fastpath_data.py is stale: python -m nsbox.fastpath_gen"


def test_the_index_names_every_recipe_file_and_the_code_they_use():
    keys = [k for k, _size, _crc in data.LIST_SOURCES]
    assert {f"recipes/{f}" for f in data.LIST_FILES} <= set(keys)
    assert data.LIST_FILES == tuple(sorted(p.name for p in (REPO / "recipes").glob("*.py")
                                           if not p.name.startswith("_")))
    # what recipes import to compute their parameters, and the data a kit reads
    assert {"nsbox/recipe.py", "nsbox/listing.py", "nsbox/kits/netpol/cases.json"} <= set(keys)


def test_the_markers_it_checks_are_the_ones_nsbox_uses():
    from nsbox import recipe
    from nsbox.sandbox import enter, result_pipe

    assert fastpath._CLAIMS == (enter.SANDBOX_ENV, result_pipe.RESULT_FD_ENV)
    assert fastpath.RECIPE_PATH_ENV == recipe.RECIPE_PATH_ENV


# ------------------------------------------------------------------------------------ --help

@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_help_is_clicks_to_the_byte(args):
    f, s = fast(*args), slow(*args)
    _same(f, s)
    assert (f.stdout or f.stderr).startswith("Usage: nsbox [OPTIONS] COMMAND")
    assert f.returncode == (0 if args else 2)  # no arguments: click prints it to stderr, exit 2
    got = loaded(*args)
    assert "click" not in got and "nsbox.cli" not in got and "nsbox.sandbox" not in got, sorted(got)


@pytest.mark.parametrize("columns", ["60", "79", "80", "200", "0", "junk"])
def test_help_with_COLUMNS_is_clicks(columns):
    """click wraps to COLUMNS (shutil.get_terminal_size): below 80 its text, not the index's."""
    f, s = fast("--help", COLUMNS=columns), slow("--help", COLUMNS=columns)
    _same(f, s)
    narrow = columns.isdigit() and 0 < int(columns) < 80
    assert ("click" in loaded("--help", COLUMNS=columns)) == narrow
    if columns == "60":
        assert f.stdout != data.HELP  # (at 79 click's text happens to be the same)


@pytest.mark.parametrize("columns", ["", "0", "abc", "-5", "60", "100"])
def test_help_columns_is_shutils_rule(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    assert fastpath.help_columns() == shutil.get_terminal_size().columns


def _on_terminal(columns: int, argv: list[str]) -> str:
    """What ARGV prints to a pseudo-terminal COLUMNS wide (stdout and stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        p = subprocess.Popen(argv, cwd=REPO, env=_env(), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(timeout=30) == 0
    finally:
        os.close(master)
    return out.decode()


@pytest.mark.parametrize("columns", [100, 80, 60])
def test_help_on_a_terminal_is_clicks(columns):
    fast_argv = [sys.executable, "-m", "nsbox", "--help"]
    slow_argv = [sys.executable, "-c", "from nsbox.cli import main; main(['--help'], prog_name='nsbox')"]
    f, s = _on_terminal(columns, fast_argv), _on_terminal(columns, slow_argv)
    assert f == s
    assert (f == data.HELP.replace("\n", "\r\n")) == (columns >= 80)


# ------------------------------------------------------------------------------------ list

@pytest.mark.parametrize("args", [["list"], ["list", "--format", "json"], ["list", "--format=json"],
                                  ["list", "--format", "text"]])
def test_list_is_the_jails_to_the_byte(args):
    f, s = fast(*args), slow(*args)
    _same(f, s)
    assert f.returncode == 0 and "bridge-mode" in f.stdout
    got = loaded(*args)
    assert "click" not in got and "nsbox.sandbox.jail" not in got and "nsbox.recipe" not in got, sorted(got)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the package and the recipes, as a checkout: edits there touch nothing here."""
    for name in ("nsbox", "recipes"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _assert_slow_and_same(root: Path, *args: str) -> subprocess.CompletedProcess:
    f = fast(*args, root=root)
    _same(f, slow(*args, root=root))
    assert "nsbox.sandbox.jail" in loaded(*args, root=root)  # not served from the index
    return f


def test_the_copy_is_served_from_the_index(checkout: Path):
    """The control for the tests below: unchanged, a copy elsewhere is served fast."""
    f = fast("list", "--format", "json", root=checkout)
    _same(f, slow("list", "--format", "json", root=checkout))
    assert f'"{checkout}/recipes/bridge_mode.py"' in f.stdout
    assert "nsbox.sandbox.jail" not in loaded("list", root=checkout)


def test_an_edited_recipe_is_not_served_from_the_index(checkout: Path):
    path = checkout / "recipes" / "bridge_mode.py"
    old = "Docker's default bridge (docker0)"
    path.write_text(path.read_text().replace(old, "An edited bridge", 1))
    f = _assert_slow_and_same(checkout, "list")
    assert "An edited bridge" in f.stdout and old not in f.stdout


def test_edited_nsbox_code_is_not_served_from_the_index(checkout: Path):
    """The recipes' parameters come from nsbox code too (defaults, choices): a change
    there, even one that changes no output, sends `list` to the jail."""
    key = next(k for k, _s, _c in data.LIST_SOURCES if k.startswith("nsbox/kits/"))
    path = checkout / key
    path.write_text(path.read_text() + "\n# edited\n")
    _assert_slow_and_same(checkout, "list", "--format", "json")


def test_a_new_or_removed_recipe_file_is_not_served_from_the_index(checkout: Path):
    (checkout / "recipes" / "tiny.py").write_text(
        "from nsbox.recipe import recipe\n\n\n@recipe('tiny')\ndef build(lab):\n    '''A tiny lab.'''\n")
    f = _assert_slow_and_same(checkout, "list")
    assert any(ln.startswith("tiny ") for ln in f.stdout.splitlines())
    (checkout / "recipes" / "tiny.py").unlink()
    (checkout / "recipes" / "none_mode.py").unlink()
    f = _assert_slow_and_same(checkout, "list")
    assert "none-mode" not in f.stdout


def test_an_edited_cli_is_not_served_help_from_the_index(checkout: Path):
    path = checkout / "nsbox" / "cli.py"
    path.write_text(path.read_text().replace("List the recipes with a one-line description.",
                                             "List every recipe.", 1))
    f = fast("--help", root=checkout)
    _same(f, slow("--help", root=checkout))
    assert "List every recipe." in f.stdout
    assert "click" in loaded("--help", root=checkout)


def test_more_recipe_directories_go_to_the_jail(tmp_path: Path):
    (tmp_path / "tiny.py").write_text(
        "from nsbox.recipe import recipe\n\n\n@recipe('tiny')\ndef build(lab):\n    '''A tiny lab.'''\n")
    for args, env in ((["list", "--recipes", str(tmp_path)], {}), (["list"], {"NSBOX_RECIPE_PATH": str(tmp_path)})):
        f = fast(*args, **env)
        _same(f, slow(*args, **env))
        assert any(ln.startswith("tiny ") for ln in f.stdout.splitlines())
        assert "nsbox.sandbox.jail" in loaded(*args, **env)


# ------------------------------------------------------------------------------------ declined

@pytest.mark.parametrize("marker", [{"NSBOX_SANDBOX": "1"}, {"NSBOX_RESULT_FD": "9"}])
def test_a_sandbox_marker_takes_the_slow_path_and_its_claim(marker):
    """The claim (enter.claim_from_environment) has work to do: nothing comes before it."""
    for args in (["--help"], ["list"]):
        got = loaded(*args, **marker)
        assert "nsbox.sandbox.enter" in got and "click" in got
        _same(fast(*args, **marker), slow(*args, **marker))


def test_shell_completion_is_clicks():
    f = fast(_NSBOX_COMPLETE="bash_source")
    assert f.returncode == 0 and "_nsbox_completion" in f.stdout and "Usage:" not in f.stdout


def test_a_closed_pipe_ends_as_click_ends():
    for run in (fast, slow):
        for args in (["--help"], ["list"]):
            r, w = os.pipe()
            os.close(r)
            code = ("import sys; from nsbox.entry import main; main()" if run is fast else
                    f"from nsbox.cli import main; main({args!r}, prog_name='nsbox')")
            p = subprocess.run([sys.executable, "-c", code, *(args if run is fast else [])], cwd=REPO,
                               env=_env(), stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
            os.close(w)
            assert (p.returncode, p.stderr) == (1, ""), (run.__name__, args)


def test_text_a_stream_cannot_encode_is_left_to_click():
    """click writes UTF-8 to a stream it calls misconfigured (ASCII); a plain write would raise."""
    import io

    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert fastpath._write(ascii_out, "caf\u00e9\n", 0) is None
    utf8_out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert fastpath._write(utf8_out, "caf\u00e9\n", 0) == 0
    assert fastpath._write(ascii_out, "plain\n", 0) == 0


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_list_and_help_on_other_encodings_are_the_same(encoding):
    env = _env(PYTHONIOENCODING=encoding)  # (-I would ignore it: not isolated here)
    for args in (["--help"], ["list"]):
        runs = [subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=60) for argv in (
            [sys.executable, "-m", "nsbox", *args],
            [sys.executable, "-c", f"from nsbox.cli import main; main({args!r}, prog_name='nsbox')"])]
        assert runs[0].returncode == 0 and runs[0].stdout
        _same(*runs)


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--format", "json"]])
def test_the_fast_path_imports_nothing_heavy(args):
    """Its cost is the modules it loads: beyond the interpreter's own start-up, only these
    (an import added to nsbox.entry, nsbox.signals or nsbox.fastpath shows up here)."""
    bare = subprocess.run([sys.executable, "-I", "-X", "importtime", "-c", "pass"], env=_env(),
                          capture_output=True, text=True, timeout=60).stderr
    interpreter = {ln.rsplit("|", 1)[1].strip() for ln in bare.splitlines() if ln.startswith("import time:")}
    extra = loaded(*args) - interpreter
    assert extra <= {"nsbox", "nsbox.signals", "atexit", "nsbox.entry", "nsbox.fastpath", "nsbox._fastpath_data",
                     "zlib"}, sorted(extra)
