"""`--output FILE` and `--artifacts DIR` as root, against a user who can change the
directory (issue 12, items 1, 2 and 20): no write, chmod or truncate ever lands
outside the directory root was pointed at. Attacks are made deterministic by
planting (a symlink owned by uid 65534, a renamed directory) between the check
and the write, instead of racing; the observer is os.stat/the file content."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nsbox import safefs
from nsbox.artifacts import collect
from nsbox.artifacts.folder import Folder
from nsbox.artifacts.target import prepare_dir
from nsbox.errors import UsageError
from nsbox.report import output
from tests.support.paths import REPO

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: plants files owned by another user")


@pytest.fixture
def secret(tmp_path) -> Path:
    """A root-only directory holding a root-only 0600 file: what an attacker aims at."""
    d = tmp_path / "secret"
    d.mkdir(mode=0o700)
    f = d / "shadow"
    f.write_text("root only\n")
    f.chmod(0o600)
    return f


@pytest.fixture
def sticky(tmp_path) -> Path:
    """A sticky world-writable directory, like /tmp."""
    d = tmp_path / "sticky"
    d.mkdir()
    d.chmod(0o1777)
    return d


def plant_symlink(link: Path, target: Path, uid: int = NOBODY) -> None:
    link.symlink_to(target)
    os.lchown(link, uid, uid)


def unchanged(secret: Path) -> bool:
    st = secret.stat()
    return secret.read_text() == "root only\n" and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0


# ---------------------------------------------------------------------------- --output


@root_only
def test_output_symlink_planted_at_file_by_another_user_is_refused(sticky, secret):
    plant_symlink(sticky / "report.xml", secret)
    with pytest.raises(UsageError, match="symlink owned by uid 65534"):
        output.check_output_path(str(sticky / "report.xml"), sandboxed=False)
    assert unchanged(secret)
    assert os.path.islink(sticky / "report.xml")


@root_only
def test_output_symlink_planted_as_a_directory_component_is_refused(sticky, secret):
    plant_symlink(sticky / "out", secret.parent)
    with pytest.raises(UsageError, match="symlink owned by uid 65534"):
        output.check_output_path(str(sticky / "out" / "shadow"), sandboxed=False)
    assert unchanged(secret)


def test_output_roots_own_symlink_in_a_private_directory_is_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (real / "r.txt").write_text("old")
    (tmp_path / "r-link.txt").symlink_to(real / "r.txt")
    output.write_atomically(str(tmp_path / "link" / "r.json"), "{}\n")
    output.write_atomically(str(tmp_path / "r-link.txt"), "new\n")
    assert (real / "r.json").read_text() == "{}\n"
    assert (real / "r.txt").read_text() == "new\n" and os.path.islink(tmp_path / "r-link.txt")


@root_only
def test_output_directory_swapped_for_a_symlink_after_the_check_writes_into_the_original(tmp_path, secret):
    """A user who owns DIR renames it and puts a symlink to a root-only directory in its
    place between the check and the write: the report goes into DIR's inode, nothing
    into the root-only directory, and no mode changes there."""
    user_dir = tmp_path / "home"
    user_dir.mkdir()
    os.chown(user_dir, NOBODY, NOBODY)
    target = output.check_output_path(str(user_dir / "shadow"), sandboxed=False)
    user_dir.rename(tmp_path / "home.moved")
    plant_symlink(user_dir, secret.parent)
    old = os.umask(0)
    try:
        output.write_atomically(target, "report\n")
    finally:
        os.umask(old)
    assert unchanged(secret)
    assert sorted(os.listdir(secret.parent)) == ["shadow"]
    moved = tmp_path / "home.moved" / "shadow"
    assert moved.read_text() == "report\n" and stat.S_IMODE(moved.stat().st_mode) == 0o666


@root_only
def test_output_file_swapped_for_a_symlink_after_the_check_is_replaced_not_followed(sticky, secret):
    target = output.check_output_path(str(sticky / "r.txt"), sandboxed=False)
    plant_symlink(sticky / "r.txt", secret)
    output.write_atomically(target, "report\n")
    assert unchanged(secret)
    assert not os.path.islink(sticky / "r.txt") and (sticky / "r.txt").read_text() == "report\n"


def test_output_mode_is_set_on_the_file_not_by_path(tmp_path, monkeypatch):
    """No chmod by path at all (the old window between mkstemp and chmod)."""
    def no(*a, **k):
        raise AssertionError("chmod by path")
    monkeypatch.setattr(os, "chmod", no)
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0, 0o666)):
        old = os.umask(umask)
        try:
            output.write_atomically(str(tmp_path / "r.txt"), "x\n")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "r.txt").stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["r.txt"]


@pytest.mark.parametrize("path, words", [
    ("/dev/null", "a character device"),
    ("/proc/sys/net/ipv4/ip_forward", "on proc"),
    ("/proc/self/fd/1", "on proc"),
    ("/sys/kernel/nsbox-report", "on sys"),
])
def test_output_onto_a_device_or_a_kernel_interface_is_refused(path, words):
    with pytest.raises(UsageError, match=words):
        output.check_output_path(path, sandboxed=False)


def test_output_onto_a_fifo_or_a_directory_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="a FIFO"):
        output.check_output_path(str(tmp_path / "fifo"), sandboxed=False)
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        output.check_output_path(str(tmp_path / "dir"), sandboxed=False)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target", ["/dev/null", "/proc/sys/net/ipv4/ip_forward", "/sys/kernel/x"])
@pytest.mark.parametrize("extra", [[], ["--on-host"]])
def test_cli_refuses_such_output_in_one_line_before_anything(target, extra):
    before = os.stat("/dev/null")
    p = cli("run", "bridge-mode", "--output", target, *extra)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: --output"), p.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


# ---------------------------------------------------------------------------- --artifacts


@root_only
def test_artifacts_symlink_planted_in_a_sticky_directory_is_refused(sticky, secret):
    plant_symlink(sticky / "arts", secret.parent)
    with pytest.raises(UsageError, match="symlink owned by uid 65534"):
        prepare_dir(str(sticky / "arts"), sandboxed=False)
    with pytest.raises(UsageError, match="symlink owned by uid 65534"):
        prepare_dir(str(sticky / "arts" / "sub"), sandboxed=False)
    assert sorted(os.listdir(secret.parent)) == ["shadow"]


@root_only
def test_artifacts_dir_renamed_after_the_check_writes_into_the_original(tmp_path, secret):
    """The user owns DIR, renames it and leaves a symlink to the root-only directory:
    the recipe folder is made in DIR's inode (through the fd), nothing in the secret one."""
    user_dir = tmp_path / "arts"
    user_dir.mkdir()
    os.chown(user_dir, NOBODY, NOBODY)
    target = prepare_dir(str(user_dir / "new" / "deeper"), sandboxed=False)
    user_dir.rename(tmp_path / "arts.moved")
    plant_symlink(user_dir, secret.parent)
    folder = collect._fresh_dir(target, "demo")
    try:
        with folder.create("README.txt") as f:
            f.write(b"hello\n")
    finally:
        folder.close()
    assert unchanged(secret) and sorted(os.listdir(secret.parent)) == ["shadow"]
    assert (tmp_path / "arts.moved" / "new" / "deeper" / "demo" / "README.txt").read_text() == "hello\n"


@root_only
def test_artifacts_missing_dir_planted_as_a_symlink_before_collecting_is_not_followed(sticky, secret):
    target = prepare_dir(str(sticky / "arts"), sandboxed=False)
    plant_symlink(sticky / "arts", secret.parent)
    with pytest.raises(OSError):
        collect._fresh_dir(target, "demo")
    assert sorted(os.listdir(secret.parent)) == ["shadow"]


def test_artifacts_files_are_only_ever_new(tmp_path, secret):
    """A file or a symlink already at a name is never opened: O_CREAT|O_EXCL|O_NOFOLLOW."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "addr.json").symlink_to(secret)
    (d / "link.json").write_text("keep")
    folder = Folder(os.open(d, os.O_PATH | os.O_DIRECTORY), str(d))
    try:
        for name in ("addr.json", "link.json"):
            with pytest.raises(FileExistsError):
                folder.create(name)
    finally:
        folder.close()
    assert secret.read_text() == "root only\n" and (d / "link.json").read_text() == "keep"


def test_artifacts_a_second_run_gets_its_own_folder_and_creates_missing_parents(tmp_path):
    target = prepare_dir(str(tmp_path / "a" / "b"), sandboxed=False)
    assert not (tmp_path / "a").exists()
    names = []
    for _ in range(2):
        f = collect._fresh_dir(target, "demo")
        names.append(f.path)
        f.close()
    assert names == [str(tmp_path / "a" / "b" / "demo"), str(tmp_path / "a" / "b" / "demo.2")]


@pytest.mark.parametrize("path, words", [("/proc/nsbox-x", "on proc"), ("/sys/fs/x", "on sys")])
def test_artifacts_under_proc_or_sys_is_refused(path, words):
    with pytest.raises(UsageError, match=words):
        prepare_dir(path, sandboxed=False)


def test_walk_refuses_a_file_on_the_way_and_reports_what_is_missing(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(safefs.UnsafePath, match="is not a directory"):
        safefs.walk(str(tmp_path / "f" / "x"), allow_missing=True)
    w = safefs.walk(str(tmp_path / "x" / "y"), allow_missing=True)
    try:
        assert w.path == str(tmp_path) and w.missing == ["x", "y"]
    finally:
        os.close(w.fd)
