"""What realize created, so teardown removes exactly that and nothing else.

Entries are written before the object is made (write-ahead), so a crash leaves a
journal that still names everything that may exist. With a path (--on-host) the
journal is also a JSON-lines file that a later run can follow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

from nsbox.errors import KernelError
from nsbox.kernel import netns


@dataclass
class Journal:
    path: str | None = None
    entries: list[dict] = field(default_factory=list)

    def record(self, kind: str, **attrs: str) -> None:
        entry = {"kind": kind, **attrs}
        self.entries.append(entry)
        if self.path:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def undo(self) -> list[str]:
        """Remove every recorded object, newest first. Returns problems, never raises."""
        problems: list[str] = []
        for entry in reversed(self.entries):
            try:
                _UNDO[entry["kind"]](entry)
            except (KernelError, OSError) as e:
                problems.append(f"{entry}: {e}")
        self.entries.clear()
        if self.path and not problems:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        return problems

    @classmethod
    def load(cls, path: str) -> Journal:
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        return cls(path=path, entries=entries)

    @property
    def owner_alive(self) -> bool:
        """Whether the nsbox process that wrote this journal still runs."""
        for e in self.entries:
            if e["kind"] == "owner":
                try:
                    with open(f"/proc/{e['pid']}/stat") as f:
                        # pid reuse: the start time must match too
                        return f.read().rsplit(")", 1)[1].split()[19] == e["start"]
                except (OSError, IndexError):
                    return False
        return False

    def objects(self) -> list[str]:
        return [e["path"] for e in self.entries if e["kind"] == "netns"]


def owner_entry() -> dict[str, str]:
    """Identifies this process (pid + start time) as the owner of a journal."""
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    return {"pid": str(os.getpid()), "start": start}


def stale_journals(directory: str) -> list[Journal]:
    """Journals in DIRECTORY whose owner process has gone (killed before teardown)."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        if name.endswith(".journal"):
            j = Journal.load(os.path.join(directory, name))
            if not j.owner_alive:
                out.append(j)
    return out


# Links, addresses, routes and rules all live inside lab namespaces and vanish
# with them, so the namespace is the only object that needs undoing.
_UNDO: dict[str, Callable[[dict], None]] = {
    "owner": lambda e: None,
    "dir": lambda e: _release_dir(e["path"], e["marker"]),
    "netns": lambda e: netns.delete(e["path"]),
}


def _release_dir(path: str, marker: str) -> None:
    """Remove PATH (made by nsbox, see realize.claim_netns_dir) once no lab uses it."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:  # another lab (or ip netns) still has namespaces there
        return
    try:
        os.unlink(marker)
    except FileNotFoundError:
        pass
