"""The kernel tests' host guard (tests/support/host.py, foreign.py) on a shared machine:
another user's live lab (`nsbox up` as root) registers itself in /run/nsbox/labs, which
appears with the first live lab and goes with the last; a kernel test running meanwhile must
not count that as its own leak, and must still count it when nobody else's lab is up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.foreign import FOREIGN_LIVE_LAB, _start_time, foreign_labs
from tests.support.host import HostSnapshot

ENTRIES = "/run/nsbox entries"


def _record(registry: Path, name: str, pid: int, start: str | None) -> None:
    registry.mkdir(exist_ok=True)
    (registry / f"{name}.json").write_text(json.dumps({"name": name, "holder_pid": pid, "holder_start": start}))


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_live_lab_held_by_another_process_is_foreign(tmp_path: Path) -> None:
    # pid 1 is alive and never a descendant of the test
    _record(tmp_path, "theirs", 1, _start_time(1))
    assert FOREIGN_LIVE_LAB in foreign_labs(registry=tmp_path)


def test_own_gone_or_reused_holders_are_not_foreign(tmp_path: Path) -> None:
    _record(tmp_path, "ours", os.getpid(), _start_time(os.getpid()))
    _record(tmp_path, "gone", _dead_pid(), "1")
    _record(tmp_path, "reused", 1, "not-its-start-time")
    (tmp_path / "garbage.json").write_text("{")
    assert FOREIGN_LIVE_LAB not in foreign_labs(registry=tmp_path)
    assert FOREIGN_LIVE_LAB not in foreign_labs(registry=tmp_path / "missing")


def test_the_registry_folder_is_excused_only_while_a_foreign_lab_is_seen() -> None:
    without = HostSnapshot(sets={ENTRIES: frozenset()})
    with_labs = HostSnapshot(sets={ENTRIES: frozenset({"labs"})})
    # nobody else's lab: a registry left behind by the test is its leak
    assert without.diff(with_labs) == [f"{ENTRIES}:", "    + labs"]
    # another's live lab up before or after: its registry coming or going is not the test's
    theirs_before = HostSnapshot(sets={ENTRIES: frozenset()}, foreign=frozenset({FOREIGN_LIVE_LAB}))
    theirs_after = HostSnapshot(sets={ENTRIES: frozenset({"labs"})}, foreign=frozenset({FOREIGN_LIVE_LAB}))
    assert theirs_before.diff(with_labs) == [] and with_labs.diff(HostSnapshot(
        sets={ENTRIES: frozenset()}, foreign=frozenset({FOREIGN_LIVE_LAB}))) == []
    assert without.diff(theirs_after) == []
    # and it excuses nothing else: a journal of the test's own is still a leak
    leak = HostSnapshot(sets={ENTRIES: frozenset({"labs", "nsb0123456789ab-journal"})},
                        foreign=frozenset({FOREIGN_LIVE_LAB}))
    assert theirs_before.diff(leak) == [f"{ENTRIES}:", "    + nsb0123456789ab-journal"]
