"""The command line on bad input: every error here is found before the sandbox is
entered, so none of these needs root or touches the kernel.

Each case must fail in argument parsing or in load_labs(); a case that got past
them would build a lab, so every run below asserts a usage error (exit 2)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nsbox as nsbox_pkg

REPO = Path(__file__).resolve().parent.parent


def nsbox(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> str:
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("nsbox: error: ")
    for w in words:
        assert w in lines[0]
    return lines[0]


def test_unknown_recipe_suggests_bridge_mode():
    assert_one_line_error(nsbox("run", "bridge-mod"), "unknown recipe 'bridge-mod'", "did you mean bridge-mode")


@pytest.mark.parametrize("setting, words", [
    ("containers=abc", "expected an integer, got 'abc'"),
    ("containers=1", "must be between 2 and 1000"),
    ("containers=1001", "must be between 2 and 1000"),
    ("nope=1", "no recipe given has a parameter 'nope' (parameters: containers)"),
    ("novalue", "--set expects KEY=VALUE, got 'novalue'"),
    ("=5", "--set expects KEY=VALUE"),
])
def test_bad_set(setting, words):
    assert_one_line_error(nsbox("run", "bridge-mode", "--set", setting), words)


@pytest.mark.parametrize("args, words", [
    (["--format", "xml"], "'xml' is not one of"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "61"], "--timeout"),
    (["--timeout", "soon"], "--timeout"),
    (["--no-such-option"], "No such option"),
])
def test_bad_options_are_usage_errors(args, words):
    p = nsbox("run", "bridge-mode", *args)
    assert p.returncode == 2
    assert p.stdout == ""
    assert words in p.stderr


def test_run_without_recipe_is_a_usage_error():
    p = nsbox("run")
    assert p.returncode == 2
    assert p.stdout == ""
    assert "Missing argument" in p.stderr


def test_invalid_lab_is_refused_before_the_sandbox(tmp_path):
    # A lab that would probe outside the lab must never get as far as the kernel.
    (tmp_path / "leaky.py").write_text(textwrap.dedent("""
        from nsbox.recipe import recipe

        @recipe("leaky")
        def build(lab):
            '''Probes the internet.'''
            lab.expect("host", "8.8.8.8", "icmp")
    """))
    assert_one_line_error(nsbox("run", "leaky", "--recipes", str(tmp_path)),
                          "8.8.8.8 belongs to no node of the lab")


def test_broken_recipe_file_is_one_line_error_and_hides_nothing(tmp_path):
    (tmp_path / "broken.py").write_text("def build(:\n")
    p = nsbox("list", "--recipes", str(tmp_path))
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith("nsbox: error: ") and "cannot load recipe file" in line
    assert str(tmp_path / "broken.py") in line
    assert p.stdout.startswith("bridge-mode ")  # the other recipes are still listed


def test_list_shows_bridge_mode():
    p = nsbox("list")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    (line,) = [ln for ln in p.stdout.splitlines() if ln.startswith("bridge-mode ")]
    assert "Docker's default bridge (docker0)" in line
    assert line.endswith("[containers=2]")


def test_list_includes_extra_dir(tmp_path):
    (tmp_path / "tiny.py").write_text(textwrap.dedent("""
        from nsbox.recipe import recipe

        @recipe("tiny")
        def build(lab):
            '''A tiny lab.'''
    """))
    p = nsbox("list", "--recipes", str(tmp_path))
    assert p.returncode == 0, p.stderr
    names = [ln.split()[0] for ln in p.stdout.splitlines()]
    assert names == sorted(names) and {"bridge-mode", "tiny"} <= set(names)


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["run", "--help"], ["list", "--help"]])
def test_help(args):
    p = nsbox(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage:")
    assert p.stderr == ""


def test_help_lists_commands_and_run_options():
    top = nsbox("--help").stdout
    assert "list" in top and "run" in top
    run = nsbox("run", "--help").stdout
    for opt in ("--format", "--set", "--timeout", "--on-host", "--recipes", "--then"):
        assert opt in run


def test_version():
    p = nsbox("--version")
    assert p.returncode == 0
    assert p.stdout.strip() == f"nsbox, version {nsbox_pkg.__version__}"
