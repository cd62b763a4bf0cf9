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
from tests.support.paths import REPO



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
    ("nope=1", "no recipe given has a parameter 'nope' (parameters: containers, docker, ipv6)"),
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
    assert line.endswith("[containers=2 ipv6=False docker=29]")


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


# -- the security issue's bad inputs: one line, exit 2, nothing built --------------------

def _recipe_file(tmp_path: Path, body: str, name: str = "r.py") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(body))
    return tmp_path


@pytest.mark.parametrize("setting", ["containers=1_0", "containers=+3", "containers=\u0663",
                                     "containers=\uff13", "containers= 3x"])
def test_integers_are_plain_ascii_digits(setting):
    assert_one_line_error(nsbox("run", "bridge-mode", "--set", setting), "expected an integer")


def test_a_repeated_set_is_refused():
    assert_one_line_error(nsbox("run", "bridge-mode", "--set", "containers=3", "--set", "containers=4"),
                          "--set containers given twice")


def test_a_missing_recipes_dir_is_refused():
    p = nsbox("run", "bridge-mode", "--recipes", "/nonexistent-nsbox-dir")
    assert p.returncode == 2 and p.stdout == ""
    assert "does not exist" in p.stderr


def test_a_recipe_may_not_take_a_builtin_name(tmp_path):
    _recipe_file(tmp_path, """
        from nsbox.recipe import recipe

        @recipe("bridge-mode")
        def build(lab):
            '''An impostor that checks nothing.'''
    """)
    assert_one_line_error(nsbox("run", "bridge-mode", "--recipes", str(tmp_path)),
                          "a recipe may not replace another")


@pytest.mark.parametrize("name", ["x/../../../tmp/evil", "Upper", "-dash", "a b", "x" * 49, ""])
def test_recipe_names_are_checked_when_loaded(tmp_path, name):
    _recipe_file(tmp_path, f"""
        from nsbox.recipe import recipe

        @recipe({name!r})
        def build(lab):
            lab.expect("host", "host", "icmp")
    """)
    line = assert_one_line_error(nsbox("run", "anything", "--recipes", str(tmp_path)), "bad recipe name")
    assert f"{tmp_path / 'r.py'}:4" in line


@pytest.mark.parametrize("stmt, words", [
    ("sys.exit(0)", "it called sys.exit(0)"),
    ("raise SystemExit(3)", "it called sys.exit(3)"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("raise GeneratorExit('x')", "GeneratorExit"),
])
def test_a_recipe_that_exits_or_raises_is_an_error_with_file_and_line(tmp_path, stmt, words):
    _recipe_file(tmp_path, f"""
        import sys
        from nsbox.recipe import recipe

        @recipe("quitter")
        def build(lab):
            {stmt}
    """)
    line = assert_one_line_error(nsbox("run", "quitter", "--recipes", str(tmp_path)), words)
    assert f"{tmp_path / 'r.py'}:7" in line


def test_a_recipe_file_that_exits_while_loading_is_an_error(tmp_path):
    # the file names the recipe asked for (files that do not are never run: recipe.index)
    _recipe_file(tmp_path, "import sys\nsys.exit(0)\n@recipe('anything')\ndef b(lab): pass\n")
    line = assert_one_line_error(nsbox("run", "anything", "--recipes", str(tmp_path)), "sys.exit(0)")
    assert f"{tmp_path / 'r.py'}:2" in line


def test_a_recipe_without_checks_is_an_error(tmp_path):
    _recipe_file(tmp_path, """
        from nsbox.recipe import recipe

        @recipe("silent")
        def build(lab):
            lab.node("a")
    """)
    line = assert_one_line_error(nsbox("run", "silent", "--recipes", str(tmp_path)), "defines no checks")
    assert f"{tmp_path / 'r.py'}:4" in line


@pytest.mark.parametrize("body, words", [
    ("a = lab.node('a'); lab.veth(a, 'all', lab.host, 'v0')", "reserved by the kernel"),
    ("a = lab.node('a'); lab.veth(a, 'default', lab.host, 'v0')", "reserved by the kernel"),
    ("a = lab.node('a'); lab.veth(a, 'e\\x00th', lab.host, 'v0')", "NUL"),
    ("lab.host.route('10.0.0.0/8', dev='lo'); lab.host.route('10.0.0.0/8', dev='lo')", "two routes to 10.0.0.0/8"),
    ("lab.host.sysctl('net.ipv4.ip_forward', 'banana')", "the kernel refuses it"),
    ("lab.host.sysctl('net.ipv4.ip_forward', '1\\n0')", "is not a number"),
    ("lab.host.sysctl('net.core.rmem_max', 4096)", "sysctl net.core.rmem_max=4096"),
])
def test_bad_input_that_used_to_reach_the_kernel(tmp_path, body, words):
    _recipe_file(tmp_path, f"""
        from nsbox.recipe import recipe

        @recipe("bad")
        def build(lab):
            {body}
            z = lab.node("z")
            lab.veth(z, "eth0", lab.host, "vz")
            z.address("eth0", "10.9.0.2/24")
            lab.host.address("vz", "10.9.0.1/24")
            lab.expect("z", "host", "icmp")
    """)
    for mode in ([], ["--on-host"]):
        assert_one_line_error(nsbox("run", "bad", "--recipes", str(tmp_path), *mode), words)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_timeout_must_be_finite(value):
    p = nsbox("run", "bridge-mode", "--timeout", value)
    assert p.returncode == 2 and p.stdout == ""
    assert "Traceback" not in p.stderr and "--timeout" in p.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "601", "soon"])
def test_settle_must_be_seconds_in_range(value):
    p = nsbox("run", "bridge-mode", "--settle", value)
    assert p.returncode == 2 and p.stdout == ""
    assert "Traceback" not in p.stderr and "--settle" in p.stderr


def test_rerun_flags_carry_settle():
    from nsbox.cli import _rerun_flags

    assert _rerun_flags(False, 1.0, (), 0.5) == ["--settle", "0.5"]
    assert _rerun_flags(True, 0.3, ()) == ["--on-host", "--timeout", "0.3"]


def test_list_json_has_parameters_ranges_and_help():
    import json
    p = nsbox("list", "--format", "json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["schema_version"] == 1 and data["broken"] == []
    (bm,) = [r for r in data["recipes"] if r["name"] == "bridge-mode"]
    assert bm["params"][:1] == [{"name": "containers", "default": 2, "type": "int", "min": 2, "max": 1000,
                             "help": "number of containers on docker0"}]


def test_list_json_names_broken_files(tmp_path):
    import json
    (tmp_path / "broken.py").write_text("raise RuntimeError('nope')\n")
    p = nsbox("list", "--format", "json", "--recipes", str(tmp_path))
    assert p.returncode == 2
    data = json.loads(p.stdout)
    assert [b["file"] for b in data["broken"]] == [str(tmp_path / "broken.py")]
    assert "RuntimeError: nope" in data["broken"][0]["error"]


def test_a_pattern_that_matches_nothing_is_refused():
    assert_one_line_error(nsbox("run", "k8s-*"), "no recipe matches 'k8s-*'")


def test_run_needs_a_recipe_or_all():
    p = nsbox("run")
    assert p.returncode == 2 and "--all" in p.stderr


def test_rerun_hint_repeats_every_flag(tmp_path):
    from nsbox.cli import rerun_command
    from nsbox.model import Lab

    lab = Lab("mx-fail")
    lab.sets = {"n": "3"}
    lab.source = str(tmp_path / "f.py")
    assert rerun_command(lab, ["--on-host", "--timeout", "0.2"]) == (
        f"nsbox run mx-fail --set n=3 --on-host --timeout 0.2 --recipes {tmp_path} --then bash")


def test_a_signal_wrapped_by_python_is_still_a_signal():
    from nsbox.entry import _terminated_in
    from nsbox.signals import Terminated

    try:
        try:
            raise Terminated(2)
        except Terminated as t:
            raise RuntimeError("Error calling __set_name__") from t
    except RuntimeError as e:
        assert _terminated_in(e).exit_code == 130
    assert _terminated_in(ValueError("x")) is None
