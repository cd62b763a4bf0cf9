"""Trust, round two (issue 12), input side: which recipe code runs, one validation for
every mode, bad input refused in one line before the kernel is touched.

Every case here runs nsbox as a separate process (python -m nsbox from this checkout)
and judges what it printed, its exit status, and files a planted recipe would have
written: nothing here needs the kernel (validate/explain/show load recipes in the jail)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


def nsbox(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    base["PYTHONPATH"] = str(REPO)  # this checkout's nsbox, whatever the working directory
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("nsbox: error: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def planted(d: Path, marker: Path, name: str = "evil.py") -> Path:
    """A recipe file that, if ever run, writes MARKER (and would do worse as root)."""
    path = d / name
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return path


def tiny(d: Path, filename: str, *names: str, extra: str = "") -> Path:
    body = "from nsbox.recipe import recipe\n" + extra
    for n in names:
        body += textwrap.dedent(f"""
            @recipe({n!r})
            def build_{n.replace('-', '_')}(lab):
                '''{n}.'''
                lab.host.bridge("br0", "10.0.0.1/24")
                lab.expect("host", "host", "icmp")
            """)
    path = d / filename
    path.write_text(body)
    return path


@pytest.fixture
def rdir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    d.mkdir(mode=0o755)
    return d


# -- item 4: --recipes DIR runs only what is asked for, from trusted places ------------

@pytest.mark.parametrize("cmd", [["validate", "bridge-mode"], ["explain", "bridge-mode"],
                                 ["show", "bridge-mode"], ["validate", "mine"]])
def test_a_shipped_or_named_recipe_runs_no_other_file_of_the_dir(rdir, tmp_path, cmd):
    marker = tmp_path / "marker"
    planted(rdir, marker)
    tiny(rdir, "mine.py", "mine")
    p = nsbox(*cmd, "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "a recipe file nobody asked for ran"


def test_a_pattern_is_matched_without_running_files(rdir, tmp_path):
    marker = tmp_path / "marker"
    planted(rdir, marker)
    tiny(rdir, "mine.py", "mine-a", "mine-b")
    p = nsbox("validate", "mine-*", "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["mine-a:", "mine-b:"]
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_group_or_world_writable_recipe_dir_is_refused(rdir, tmp_path, mode):
    marker = tmp_path / "marker"
    tiny(rdir, "mine.py", "mine")
    planted(rdir, marker)
    os.chmod(rdir, mode)
    one_line_error(nsbox("validate", "bridge-mode", "--recipes", str(rdir)), "writable")
    one_line_error(nsbox("list", "--recipes", str(rdir)), "writable")
    assert not marker.exists()


def test_a_recipe_file_of_another_user_is_refused(rdir, tmp_path):
    marker = tmp_path / "marker"
    evil = tiny(rdir, "evil.py", "evil", extra=f"open({str(marker)!r}, 'w').write('ran')\n")
    os.chown(evil, NOBODY, NOBODY)
    one_line_error(nsbox("validate", "evil", "--recipes", str(rdir)), "owned by uid 65534")
    one_line_error(nsbox("validate", str(evil)), "owned by uid 65534")
    one_line_error(nsbox("run", str(evil)), "owned by uid 65534")  # refused before the sandbox
    p = nsbox("list", "--recipes", str(rdir))  # list names the file it did not load, exit 2
    assert p.returncode == 2 and "owned by uid 65534" in p.stderr
    assert not marker.exists()


def test_a_recipe_dir_owned_by_another_user_is_refused(rdir, tmp_path):
    tiny(rdir, "mine.py", "mine")
    os.chown(rdir, NOBODY, NOBODY)
    one_line_error(nsbox("validate", "mine", "--recipes", str(rdir)), "owned by uid 65534")


def test_a_recipe_dir_below_a_directory_another_user_controls_is_refused(tmp_path):
    # nobody could rename their directory away and put another in its place
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    rdir = theirs / "recipes"
    rdir.mkdir()
    tiny(rdir, "mine.py", "mine")
    one_line_error(nsbox("validate", "mine", "--recipes", str(rdir)), str(theirs))


def test_a_sticky_world_writable_parent_is_fine(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    rdir = sticky / "recipes"
    rdir.mkdir()
    tiny(rdir, "mine.py", "mine")
    p = nsbox("validate", "mine", "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr


def test_a_relative_recipe_path_entry_is_refused(rdir, tmp_path):
    marker = tmp_path / "marker"
    planted(rdir, marker, "mine.py")
    one_line_error(nsbox("validate", "bridge-mode", env={"NSBOX_RECIPE_PATH": "recipes"}, cwd=tmp_path),
                   "NSBOX_RECIPE_PATH", "relative")
    one_line_error(nsbox("list", env={"NSBOX_RECIPE_PATH": "recipes"}, cwd=tmp_path), "relative")
    assert not marker.exists()


def test_nothing_is_run_from_the_working_directory(tmp_path):
    """python -m puts the working directory first on sys.path; the installed `nsbox` does
    not, and inside the sandbox nsbox runs isolated (-I). A planted click.py or nsbox/
    in the caller's directory must not run as root through either."""
    marker = tmp_path / "marker"
    (tmp_path / "click.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "recipes").mkdir()
    planted(tmp_path / "recipes", marker, "bridge_mode.py")
    entry = Path(sys.executable).parent / "nsbox"
    if not entry.exists():
        pytest.skip("no installed nsbox entry point beside this python")
    env = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([str(entry), "validate", "bridge-mode"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()


# -- item 19: --all, patterns, several recipes, files with several recipes ---------------

def test_validate_all_and_star_validate_every_recipe():
    for args in (["--all"], ["*"]):
        p = nsbox("validate", *args)
        assert p.returncode == 0, p.stderr
        names = [ln.split()[1].rstrip(":") for ln in p.stdout.splitlines()]
        assert "bridge-mode" in names and "user-networks" in names and len(names) >= 9


def test_one_refused_recipe_among_several_is_its_own_error(rdir):
    tiny(rdir, "good.py", "good")
    (rdir / "bad.py").write_text(textwrap.dedent("""
        from nsbox.recipe import recipe

        @recipe("bad")
        def build(lab):
            lab.host.bridge("br0", "10.0.0.1/24")
            lab.expect("host", "host", "tcp", port=99)  # no server there
        """))
    p = nsbox("validate", "good", "bad", "--recipes", str(rdir))
    assert p.returncode == 2
    assert p.stdout.splitlines() == [ln for ln in p.stdout.splitlines() if ln.startswith("ok  good:")]
    assert len(p.stdout.splitlines()) == 1
    assert p.stderr.startswith("nsbox: error: bad: ") and len(p.stderr.splitlines()) == 1


def test_a_file_with_several_recipes_runs_them_all_or_one_by_name(rdir):
    f = tiny(rdir, "two.py", "first", "second")
    p = nsbox("validate", str(f))
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["first:", "second:"]
    p = nsbox("validate", f"{f}:second")
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["second:"]
    one_line_error(nsbox("validate", f"{f}:third"), "no recipe 'third'")
    one_line_error(nsbox("explain", str(f)), "defines 2 recipes", f"{f}:NAME")


# -- item 20: one line, exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("opt, value", [("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"),
                                        ("--timeout", "soon"), ("--settle", "inf"), ("--settle", "-0.5")])
def test_a_bad_number_of_seconds_is_one_line(opt, value):
    one_line_error(nsbox("run", "bridge-mode", opt, value), opt)
