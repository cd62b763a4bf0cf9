"""Live labs without the kernel: lab names, records, the registry directory's checks,
and the /etc files each node gets (nsbox/live/)."""

from __future__ import annotations

import os

import pytest

from nsbox import recipe
from nsbox.errors import UsageError
from nsbox.live import registry
from nsbox.live.holder import node_files


@pytest.mark.parametrize("bad", ["", "a\nb", "../x", "x/y", "-x", ".x", "a b", "a" * 33, "é"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(UsageError) as e:
        registry.check_name(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("good", ["bridge-mode", "a", "lab_2.b", "A" * 32])
def test_good_lab_names(good: str) -> None:
    assert registry.check_name(good) == good


def test_a_record_round_trips_and_its_name_is_checked(tmp_path) -> None:
    rec = registry.Record(name="x", recipe="bridge-mode", mode="sandbox", holder_pid=os.getpid(),
                          holder_start=registry.start_time(os.getpid()) or 0, nodes={"c1": [1, 2]})
    registry.write(str(tmp_path), rec)
    assert registry.read(str(tmp_path), "x") == rec
    assert registry.is_alive(rec)
    assert registry.names(str(tmp_path)) == ["x"]
    with pytest.raises(UsageError):
        registry.Record.from_json({**rec.to_json(), "name": "../evil"})


def test_a_record_others_can_write_is_refused(tmp_path) -> None:
    rec = registry.Record(name="x", recipe="r", mode="sandbox", holder_pid=1, holder_start=1)
    registry.write(str(tmp_path), rec)
    os.chmod(tmp_path / "x.json", 0o666)
    with pytest.raises(UsageError):
        registry.read(str(tmp_path), "x")


def test_a_reused_pid_is_not_the_holder() -> None:
    start = registry.start_time(os.getpid())
    assert start is not None
    assert registry.alive(os.getpid(), start)
    assert not registry.alive(os.getpid(), start + 1)


def test_a_registry_dir_others_can_write_is_not_used(tmp_path, monkeypatch) -> None:
    """A non-root user's directory must be theirs and 0700: one another user could
    write would let them plant a record pointing `exec` at their process."""
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 4242)
    uid = os.geteuid()
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    real_lstat = os.lstat

    def as_owner(path, *a, **k):  # the tmp dirs are root's here; make them the fake user's
        st = real_lstat(path, *a, **k)
        if str(path).startswith(str(tmp_path)):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, uid, st.st_gid,
                                   st.st_size, st.st_atime, st.st_mtime, st.st_ctime))
        return st

    monkeypatch.setattr(os, "lstat", as_owner)
    (xdg / "nsbox").mkdir(mode=0o777)
    os.chmod(xdg / "nsbox", 0o777)
    with pytest.raises(UsageError, match="0700"):
        registry.lab_dir(create=True)
    os.chmod(xdg / "nsbox", 0o700)
    assert registry.lab_dir(create=True) == str(xdg / "nsbox")


def test_node_files_as_docker_writes_them() -> None:
    lab = recipe.get("user-networks").build({})
    files = node_files(lab, "a1")
    assert "127.0.0.1\tlocalhost\n" in files["hosts"]
    assert f"{lab.nodes['a1'].primary_ip}\ta1" in files["hosts"]
    assert "nameserver 127.0.0.11\n" in files["resolv"]
    # The default bridge has no embedded DNS: no nameserver, so no lookup leaves the lab.
    bridge = recipe.get("bridge-mode").build({})
    assert "nameserver" not in node_files(bridge, "c1")["resolv"]
