"""Where live labs are recorded: one directory per user that only that user can write.

root: /run/nsbox/labs. Others: $XDG_RUNTIME_DIR/nsbox, else /run/user/UID/nsbox,
else /tmp/nsbox-UID. Every directory on the way is checked before it is used
(owned by this user or root, not writable by anyone else, not a symlink): a
record or socket planted by someone else would otherwise point `exec` at their
process. Each lab has LAB.json (the record, 0600), LAB.sock (the holder's
control socket, 0600) and LAB.log (the holder's stderr).

A record names processes by pid *and* start time (field 22 of /proc/PID/stat):
a pid reused by an unrelated process after the holder died is never mistaken
for the lab.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field

from nsbox.errors import UsageError

# A lab name: what validate.py allows for node names, so it can be a file name and a prompt.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
ROOT_DIR = "/run/nsbox/labs"


def check_name(name: str, what: str = "lab name") -> str:
    if not NAME_RE.fullmatch(name):
        shown = name.encode("unicode_escape").decode("ascii")[:60]
        raise UsageError(f"{what} {shown!r} is not valid: 1-32 characters, letters, digits, '_', '.', '-', "
                         f"starting with a letter or digit")
    return name


def _trusted_dir(path: str, uid: int) -> bool:
    """PATH is a real directory owned by UID (or root) that no one else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid in (uid, 0) and not st.st_mode & 0o022


def _candidates(uid: int) -> list[tuple[str, str]]:
    """(parent that must already be trusted, directory to use) in order of preference."""
    if uid == 0:
        return [("/run", ROOT_DIR)]
    out = []
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/") and "\n" not in xdg:
        out.append((xdg, os.path.join(xdg, "nsbox")))
    out.append((f"/run/user/{uid}", f"/run/user/{uid}/nsbox"))
    out.append(("/tmp", f"/tmp/nsbox-{uid}"))
    return out


def lab_dir(create: bool = False) -> str | None:
    """This user's registry directory (made 0700 when CREATE), or None when there is none yet."""
    uid = os.geteuid()
    for parent, path in _candidates(uid):
        if parent != "/tmp" and not _owned_parent(parent, uid):
            continue
        if create and not _make(path, parent == "/run"):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
            if create:
                raise UsageError(f"{path} is not a directory of yours with mode 0700; "
                                 f"nsbox will not keep live labs there (remove it)")
            continue
        return path
    if create:
        raise UsageError("no private runtime directory for live labs (set XDG_RUNTIME_DIR)")
    return None


def _make(path: str, under_run_nsbox: bool) -> bool:
    """mkdir PATH 0700. Root's goes in /run/nsbox, which `nsbox clean` or a lab's
    teardown may remove when empty at any moment: try again then."""
    for _ in range(5):
        if under_run_nsbox:
            try:
                os.mkdir("/run/nsbox", 0o755)
            except FileExistsError:
                pass
            except OSError:
                return False
        try:
            os.mkdir(path, 0o700)
            return True
        except FileExistsError:
            return True
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


def _owned_parent(parent: str, uid: int) -> bool:
    if parent == "/run":
        return _trusted_dir("/run", 0) and (not os.path.lexists("/run/nsbox") or _trusted_dir("/run/nsbox", 0))
    try:
        st = os.lstat(parent)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022


@dataclass
class Record:
    """What `up` wrote about one live lab."""

    name: str
    recipe: str
    mode: str  # "sandbox" or "on-host"
    holder_pid: int  # the process that owns the lab (the sandbox's pid 1, seen from the host)
    holder_start: int
    outer_pid: int = 0  # sandbox: util-linux unshare, the holder's parent
    nodes: dict[str, list[int]] = field(default_factory=dict)  # node -> [pid, start time]
    netns: dict[str, str] = field(default_factory=dict)  # node -> netns name (in the sandbox or on the host)
    containers: dict[str, str] = field(default_factory=dict)  # container -> node
    sets: dict[str, str] = field(default_factory=dict)
    uid: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "Record":
        r = Record(**{k: d[k] for k in Record.__dataclass_fields__ if k in d})
        check_name(r.name)
        return r


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None when PID is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):  # a zombie is dead: its namespaces are gone
        return None
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and start_time(pid) == start


def is_alive(rec: Record) -> bool:
    return alive(rec.holder_pid, rec.holder_start)


def paths(directory: str, name: str) -> tuple[str, str, str]:
    """(record, socket, log) of lab NAME."""
    base = os.path.join(directory, check_name(name))
    return base + ".json", base + ".sock", base + ".log"


def write(directory: str, rec: Record) -> None:
    path = paths(directory, rec.name)[0]
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec.to_json(), f, indent=1)
    os.rename(tmp, path)


def read(directory: str, name: str) -> Record | None:
    path = paths(directory, name)[0]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise UsageError(f"{path} is not yours alone; ignored")
        try:
            return Record.from_json(json.load(f))
        except (ValueError, TypeError, KeyError, UsageError) as e:
            raise UsageError(f"{path}: not a live lab record ({e})") from None


def names(directory: str | None) -> list[str]:
    if directory is None:
        return []
    return sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".json") and NAME_RE.fullmatch(n[:-5]))


def remove(directory: str, name: str) -> None:
    for p in paths(directory, name):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def tidy(directory: str | None) -> None:
    """Remove the registry directory once its last lab is gone (and root's /run/nsbox
    with it when empty, under nsbox.host.onhost's lock): nothing left behind."""
    if directory is None:
        return
    try:
        os.rmdir(directory)
    except OSError:
        return
    if directory == ROOT_DIR:
        from nsbox.host import onhost

        onhost.remove_dir_if_empty()
