"""What realize created, so teardown removes exactly that and nothing else.

A namespace is recorded as soon as its pin file exists and before it is mounted
(netns.create), with the inodes that prove it is nsbox's, so a crash leaves a
journal that still names everything that may exist. With a path (--on-host) the
journal is also a JSON-lines file in /run/nsbox that `nsbox clean` can follow
after a kill -9; `load` is how clean reads one, trusting nothing in it that
it cannot check.

Liveness is a lock, not a pid: the nsbox that writes a journal holds an
exclusive flock on it from its first entry to its removal, and the kernel
drops it when that process ends however it ends. A pid means nothing in
another pid namespace (`unshare --pid --mount-proc nsbox clean` sees another
/proc), a lock on the file means the same thing to everyone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from dataclasses import dataclass, field, fields

from nsbox.errors import KernelError
from nsbox.host import netns

# Version 2 journals carry the inodes that prove ownership; version 1 (no
# "format" in the owner entry) named bare paths and is refused by clean.
FORMAT = 2
MAX_BYTES = 16 << 20  # 1000 containers take ~200 KB


class BadJournal(Exception):
    """A journal clean will not follow; str() is the one-line reason."""


@dataclass
class Journal:
    path: str | None = None
    entries: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things left alone, for the user
    lock_fd: int | None = None  # the owner's open journal, flock'd for the lab's whole life
    locked_by_other: bool = False  # load() found the lock taken: its owner runs

    def record(self, kind: str, **attrs: str | int) -> None:
        entry = {"kind": kind, **attrs}
        if self.path:
            # Created by the first entry (O_EXCL: never append to someone else's file);
            # 0600, as clean refuses journals others could have written.
            flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            if not self.entries:
                flags |= os.O_CREAT | os.O_EXCL
            fd = os.open(self.path, flags, 0o600)
            try:
                if not self.entries:
                    # Taken before anyone can read the file (start() holds /run/nsbox's
                    # lock): clean never sees this journal unlocked while its lab lives.
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(fd, (json.dumps(entry) + "\n").encode())
            except BaseException:
                os.close(fd)
                raise
            if self.lock_fd is None and not self.entries:
                self.lock_fd = fd
            else:
                os.close(fd)
        self.entries.append(entry)

    def record_pin(self, pin: netns.Pin) -> None:
        self.record("netns", **pin.as_entry())

    def pins(self) -> list[netns.Pin]:
        return [_pin(e) for e in self.entries if e.get("kind") == "netns"]

    def undo(self) -> list[str]:
        """Remove every recorded namespace, newest first, that is still provably
        nsbox's. Returns problems, never raises; the file goes once nothing is left."""
        problems: list[str] = []
        own = self.path is None or self.lock_fd is not None  # written by this process, not read back
        for pin, note in netns.remove_all(list(reversed(self.pins())), own):
            if isinstance(note, (KernelError, OSError)):
                problems.append(f"{os.path.basename(pin.path)}: {note}")
            elif note:
                self.notes.append(note)
        self.entries.clear()
        if self.path and not problems:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.release()
        return problems

    def release(self) -> None:
        """Let go of the owner's lock (the journal is gone, or its lab has ended)."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    @property
    def owner_alive(self) -> bool:
        """Whether the nsbox process that wrote this journal still runs: it holds the
        journal's lock (load() tried it), or, for a journal written before nsbox took
        one, its pid runs with the recorded start time in this pid namespace."""
        if self.locked_by_other:
            return True
        for e in self.entries:
            if e.get("kind") == "owner":
                try:
                    with open(f"/proc/{e['pid']}/stat") as f:
                        # pid reuse: the start time must match too; a zombie (killed, not
                        # yet reaped by its parent) runs no more
                        fields = f.read().rsplit(")", 1)[1].split()
                        return fields[19] == e["start"] and fields[0] not in ("Z", "X")
                except (OSError, IndexError):
                    return False
        return False

    def names(self) -> list[str]:
        return [os.path.basename(p.path) for p in self.pins()]


def owner_entry() -> dict[str, str | int]:
    """Identifies this process (pid + start time) as the owner of a journal."""
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    return {"pid": str(os.getpid()), "start": start, "format": FORMAT}


def unsafe(st: os.stat_result, kind: str) -> str | None:
    """Why a file or directory with stat ST cannot be trusted to be root's, or None.
    KIND is "dir" or "file"; a symlink is neither (callers lstat or O_NOFOLLOW)."""
    is_kind = stat.S_ISDIR(st.st_mode) if kind == "dir" else stat.S_ISREG(st.st_mode)
    if not is_kind:
        return f"not a {'directory' if kind == 'dir' else 'regular file'}"
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def load(dir_fd: int, name: str, dir_path: str) -> Journal:
    """Read journal NAME from the (already trusted) directory DIR_FD. Raises
    BadJournal unless it is a root-owned regular file of well-formed entries
    whose namespaces all carry this journal's own --on-host prefix. The entries
    of a journal whose owner still runs are not checked: nothing acts on them."""
    prefix = netns.PREFIX_RE.match(name)
    if not prefix or not name.endswith(".journal"):
        raise BadJournal("not named like an --on-host journal (nsbXXXXXXXXXXXX-LAB.journal)")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        raise BadJournal(f"cannot open it: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        why = unsafe(st, "file")
        if why:
            raise BadJournal(why)
        if st.st_size > MAX_BYTES:
            raise BadJournal(f"{st.st_size} bytes, more than any lab writes")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        locked = _locked_by_other(fd)
    finally:
        os.close(fd)
    entries = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadJournal(f"line {n} is not JSON") from None
        except RecursionError:  # nested deeper than the parser goes: no lab writes that
            raise BadJournal(f"line {n} is nested too deeply to be a journal entry") from None
        if not isinstance(entry, dict):
            raise BadJournal(f"line {n} is not a JSON object")
        entries.append(entry)
    owners = [e for e in entries if e.get("kind") == "owner"]
    if len(owners) != 1 or entries[0] is not owners[0]:
        raise BadJournal("it does not start with exactly one owner entry")
    _check_owner(owners[0])
    journal = Journal(path=os.path.join(dir_path, name), entries=entries, locked_by_other=locked)
    if journal.owner_alive:  # a running lab (of any version): clean will not act on it anyway
        return journal
    if owners[0].get("format") != FORMAT:
        count = sum(e.get("kind") == "netns" for e in entries)
        raise BadJournal(f"old-format journal: its {count} namespaces carry no inode, so clean cannot prove "
                         f"nsbox made them; check them with `ip netns list` and remove the journal by hand")
    for n, e in enumerate(entries[1:], 2):
        if e.get("kind") != "netns":
            raise BadJournal(f"entry {n} has unknown kind {e.get('kind')!r}")
        pin = _pin(e, n)
        base = pin.path[len(netns.NETNS_RUN_DIR) + 1:]
        if (not pin.path.startswith(netns.NETNS_RUN_DIR + "/") or not netns.ONHOST_NAME_RE.fullmatch(base)
                or not base.startswith(prefix.group())):
            raise BadJournal(f"entry {n} names {pin.path!r}, not a namespace of this lab "
                             f"({netns.NETNS_RUN_DIR}/{prefix.group()}NODE)")
    return journal


def _locked_by_other(fd: int) -> bool:
    """Whether another open file holds the flock of the journal open at FD: its lab
    still runs. Tried, never waited for, and let go at once (clean works under
    /run/nsbox's lock, so no lab can start on this journal meanwhile)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise BadJournal(f"cannot test its lock: {e.strerror}") from None
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _check_owner(e: dict) -> None:
    if not (isinstance(e.get("pid"), str) and e["pid"].isdigit()
            and isinstance(e.get("start"), str) and e["start"].isdigit()):
        raise BadJournal("owner entry lacks a numeric pid and start time")


def _pin(e: dict, n: int = 0) -> netns.Pin:
    values = {}
    for f in fields(netns.Pin):
        v = e.get(f.name)
        ok = isinstance(v, str) if f.type in ("str", str) else (isinstance(v, int) and not isinstance(v, bool)
                                                                 and v >= 0)
        if not ok:
            raise BadJournal(f"entry {n}: {f.name!r} missing or of the wrong type")
        values[f.name] = v
    return netns.Pin(**values)
