"""What an --on-host lab shares with the rest of the real host.

/run/nsbox holds one journal per live (or killed) lab and, as fixed names, the
markers saying nsbox made /run/netns or its self-bind mount. Every change to
that shared state happens under an exclusive flock of /run/nsbox, so a lab
starting and a lab (or `nsbox clean`) finishing never race.

/run/netns is set up the way iproute2 does (ip/ipnetns.c, netns_add): a shared
bind mount of itself. Then an `ip netns add` during a lab finds a mount point
already, mounts nothing over nsbox's pins, and both tools see the same ones.
Whatever nsbox added there, the last lab out takes away again, but only while
the directory is empty: a user's own namespaces keep it, as iproute2 leaves it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from nsbox.errors import KernelError
from nsbox.host import netns
from nsbox.host.journal import BadJournal, Journal, load, owner_entry, unsafe

JOURNAL_DIR = "/run/nsbox"
DIR_MARKER = "netns-dir-created"      # nsbox made /run/netns
MOUNT_MARKER = "netns-mount-created"  # nsbox made /run/netns a self-bind mount

_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def locked(create: bool = True) -> Iterator[int | None]:
    """Hold the flock of /run/nsbox; yields its fd (None if it does not exist and
    CREATE is false). Raises KernelError if it is not a root-owned directory that
    only root can write."""
    while True:
        if create:
            try:
                os.mkdir(JOURNAL_DIR, 0o700)
            except FileExistsError:
                pass
        try:
            fd = os.open(JOURNAL_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                continue
            yield None
            return
        except OSError as e:  # ELOOP, ENOTDIR: a symlink or a file
            raise KernelError(f"{JOURNAL_DIR}: {e.strerror}; refusing to use it") from None
        try:
            st = os.fstat(fd)
            why = unsafe(st, "dir")
            if why:
                raise KernelError(f"{JOURNAL_DIR} is {why}; refusing to use it")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.lstat(JOURNAL_DIR)
            except FileNotFoundError:
                now = None
            # The last one out removes the directory while holding the lock: retry on the new one.
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                yield fd
                return
        finally:
            os.close(fd)


def start(journal_path: str) -> Journal:
    """The journal of a new --on-host lab (owner entry written), with /run/netns
    ready for its namespaces."""
    with locked():
        journal = Journal(journal_path)
        try:
            journal.record("owner", **owner_entry())
        except FileExistsError:
            raise KernelError(f"{journal_path} already exists: another lab has this prefix") from None
        try:
            _claim_netns_dir()
        except BaseException:
            journal.undo()
            raise
    return journal


def finish(journal: Journal) -> list[str]:
    """Tear a lab down: its namespaces, its journal, then /run/netns if nsbox
    made it and no other lab needs it. Returns problems."""
    problems = journal.undo()
    with locked(create=False) as fd:
        if fd is not None:
            problems += release_netns_dir()
            _remove_if_empty(JOURNAL_DIR)
    return problems


def remove_dir_if_empty() -> None:
    """rmdir /run/nsbox if no lab uses it (finish does this already). Under the lock:
    a lab that holds it may be about to write its journal there."""
    try:
        with locked(create=False) as fd:
            if fd is not None:
                _remove_if_empty(JOURNAL_DIR)
    except KernelError:
        pass


def _marker(name: str) -> str:
    return os.path.join(JOURNAL_DIR, name)


def _touch(name: str) -> None:
    os.close(os.open(_marker(name), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))


def _claim_netns_dir() -> None:
    """mkdir /run/netns, flock it, make it a shared mount (binding it onto itself
    first if it is not a mount point): what `ip netns add` does. Under locked()."""
    try:
        os.mkdir(netns.NETNS_RUN_DIR, 0o755)
        _touch(DIR_MARKER)
    except FileExistsError:
        pass
    fd = _open_run_dir()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # iproute2's lock: no concurrent `ip netns add` binds it twice
        bound = False
        while _libc.mount(b"", netns.NETNS_RUN_DIR.encode(), b"none", netns.MS_SHARED | netns.MS_REC, None) != 0:
            e = ctypes.get_errno()
            if e != errno.EINVAL or bound:
                raise KernelError(f"mount --make-rshared {netns.NETNS_RUN_DIR}: {os.strerror(e)}")
            _touch(MOUNT_MARKER)  # before the mount: a crash after it still leaves the claim
            if _libc.mount(netns.NETNS_RUN_DIR.encode(), netns.NETNS_RUN_DIR.encode(), b"none",
                           netns.MS_BIND | netns.MS_REC, None) != 0:
                e = ctypes.get_errno()
                raise KernelError(f"mount --rbind {netns.NETNS_RUN_DIR} {netns.NETNS_RUN_DIR}: {os.strerror(e)}")
            bound = True
    finally:
        os.close(fd)


def _open_run_dir() -> int:
    try:
        fd = os.open(netns.NETNS_RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError(f"{netns.NETNS_RUN_DIR}: {e.strerror}") from None
    why = unsafe(os.fstat(fd), "dir")
    if why:
        os.close(fd)
        raise KernelError(f"{netns.NETNS_RUN_DIR} is {why}; refusing to use it")
    return fd


def release_netns_dir() -> list[str]:
    """Undo what nsbox added to /run/netns (the self-bind mount, the directory),
    once no lab's journal is left and the directory is empty. A user's namespaces
    there hand it over: the markers go, /run/netns stays. Under locked()."""
    made = [m for m in (DIR_MARKER, MOUNT_MARKER) if os.path.lexists(_marker(m))]
    if not made or any(n.endswith(".journal") for n in os.listdir(JOURNAL_DIR)):
        return []
    try:
        fd = _open_run_dir()
    except KernelError:
        if not os.path.lexists(netns.NETNS_RUN_DIR):  # someone removed it already
            _unlink_markers(made)
            return []
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        in_use = bool(os.listdir(fd))
    finally:
        os.close(fd)  # an open directory would keep its mount busy
    if in_use:
        _unlink_markers(made)
        return []
    # A plain umount, not a lazy one: it fails (EBUSY) rather than hide a pin that
    # an `ip netns add` put there since; that /run/netns is the user's now.
    if MOUNT_MARKER in made and _libc.umount2(netns.NETNS_RUN_DIR.encode(), netns.UMOUNT_NOFOLLOW) != 0:
        e = ctypes.get_errno()
        if e == errno.EBUSY:
            _unlink_markers(made)
            return []
        if e != errno.EINVAL:  # EINVAL: not a mount point (any more)
            return [f"umount {netns.NETNS_RUN_DIR}: {os.strerror(e)}"]
    if DIR_MARKER in made:
        try:
            os.rmdir(netns.NETNS_RUN_DIR)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EBUSY):
                return [f"rmdir {netns.NETNS_RUN_DIR}: {e.strerror}"]
    _unlink_markers(made)
    return []


def _unlink_markers(names: list[str]) -> None:
    for name in names:
        try:
            os.unlink(_marker(name))
        except FileNotFoundError:
            pass


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


@dataclass
class Cleaned:
    """What `nsbox clean` did: lines for stdout, one-line errors for stderr."""

    out: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def clean(dry_run: bool = False) -> Cleaned:
    """Tear down the labs whose nsbox was killed, following only journals that
    prove what they name (journal.load), then release /run/netns as the last lab
    out would. A journal that fails a check is reported in one line and skipped;
    the others are still followed. Nothing but proven pins, the journals followed,
    the markers and what they claim (the self-bind, the empty dir) is removed."""
    done = Cleaned()
    try:
        with locked(create=False) as fd:
            if fd is None:
                done.out.append("nothing to clean")
                return done
            stale = 0
            for name in sorted(os.listdir(fd)):
                if name in (DIR_MARKER, MOUNT_MARKER) or not name.endswith(".journal"):
                    continue
                try:
                    j = load(fd, name, JOURNAL_DIR)
                except BadJournal as e:
                    done.errors.append(f"nsbox: clean: skipping {JOURNAL_DIR}/{name}: {e}")
                    continue
                if j.owner_alive:
                    continue
                stale += 1
                done.out.append(f"{'would remove' if dry_run else 'removing'} {name}: "
                                f"{' '.join(j.names()) or 'nothing'}")
                if dry_run:
                    continue
                done.errors += [f"nsbox: error: {name}: {p}" for p in j.undo()]
                done.out += [f"{name}: {n}" for n in j.notes]
            if not stale and not done.errors:
                done.out.append("nothing to clean")
            if not dry_run:
                done.errors += [f"nsbox: error: {p}" for p in release_netns_dir()]
                _remove_if_empty(JOURNAL_DIR)
    except KernelError as e:
        done.errors.append(f"nsbox: clean: {e}; nothing cleaned")
    return done
