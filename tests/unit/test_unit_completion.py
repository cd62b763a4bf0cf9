"""Shell completion (driven through click's own environment variables, as bash and
zsh call `nsbox`) and the man page generated from the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.paths import REPO

ROOT = REPO


def complete(words: str, shell: str = "bash", *, cwd: Path = ROOT) -> list[str]:
    """What `nsbox` answers the shell's completion call for the command line WORDS
    (the cursor after its last word; a trailing space starts a new word)."""
    parts = words.split(" ")
    env = {**os.environ, "_NSBOX_COMPLETE": f"{shell}_complete", "PYTHONPATH": str(ROOT)}
    env.update(COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1))
    done = subprocess.run([sys.executable, "-m", "nsbox"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr
    if shell == "bash":   # "type,value" lines
        return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line]
    lines = done.stdout.splitlines()   # zsh: type, value, help: three lines each
    return [lines[i + 1] for i in range(0, len(lines), 3)]


def test_commands_options_and_recipe_names_complete():
    assert {"run", "show", "list", "validate", "explain", "doctor", "clean"} <= set(complete("nsbox "))
    assert complete("nsbox sh") == ["shell", "show"]
    assert complete("nsbox sho") == ["show"]
    assert "--format" in complete("nsbox show --f")
    assert complete("nsbox run bridge") == ["bridge-mode"]
    assert complete("nsbox show por") == ["port-publish"]
    assert complete("nsbox explain pod", "zsh") == ["pod", "pod-to-pod"]
    every = complete("nsbox validate ")
    assert "user-networks" in every and "bridge-mode" in every
    assert "bridge-mode" not in complete("nsbox run bridge-mode ")   # a name given is not offered again
    assert set(complete("nsbox show bridge-mode --format ")) == {"text", "mermaid", "dot", "svg", "png"}


def test_recipe_names_come_from_the_source_no_recipe_code_runs(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    marker = tmp_path / "ran"
    (d / "lab.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('recipe code ran')\n"
        "from nsbox.recipe import recipe\n"
        "@recipe('zz-mine')\n"
        "def build(lab):\n    pass\n")
    os.chmod(tmp_path, 0o755)
    assert complete(f"nsbox run --recipes {d} zz") == ["zz-mine"]
    assert not marker.exists()
    # a directory that cannot be read adds nothing, and prints nothing (no error in a Tab press)
    assert complete(f"nsbox run --recipes {tmp_path / 'missing'} bridge") == ["bridge-mode"]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_documented_eval_line_gives_a_script_the_shell_accepts(shell):
    env = {**os.environ, "_NSBOX_COMPLETE": f"{shell}_source", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "nsbox"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    assert "_NSBOX_COMPLETE" in done.stdout
    if shutil.which(shell) is None:
        pytest.skip(f"no {shell} here to parse the script")
    check = subprocess.run([shell, "-n"], input=done.stdout, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_man_page_is_up_to_date():
    done = subprocess.run([sys.executable, "-m", "nsbox.manpage"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    shipped = (ROOT / "docs" / "man" / "nsbox.1").read_text()
    assert done.stdout == shipped, \
        "docs/man/nsbox.1 is stale: run `python -m nsbox.manpage > docs/man/nsbox.1` and commit it"


def test_man_page_lists_every_command_and_option_and_renders_cleanly():
    import click

    from nsbox.cli import main
    from nsbox.manpage import page

    text = page(main)
    ctx = click.Context(main, info_name="nsbox")
    for name in main.list_commands(ctx):
        if main.get_command(ctx, name).hidden:  # _holder: nsbox's own, not for people
            assert f'nsbox {name}' not in text, name
            continue
        assert f'.SS "nsbox {name} ' in text, name
        for p in main.get_command(ctx, name).params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("-"):
                    assert opt.replace("-", "\\-") in text, (name, opt)
    if shutil.which("groff"):
        done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr, done.stderr
