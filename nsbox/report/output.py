"""Where a report goes: stdout, or `--output FILE`, written atomically.

A CI job that reads FILE must never see half a report: the report is written to
a new temporary file in the same directory and renamed over FILE (rename is
atomic within a file system). The path is checked before anything is built, so a
typo costs a one-line error (exit 2), not a whole run; and its directory is
opened then, once: the report is written through that fd (nsbox/safefs.py says
why, and what is refused: a symlink someone else planted, /dev/null, a FIFO,
/proc, /sys).
"""

from __future__ import annotations

import os
import stat
import sys

from nsbox import safefs
from nsbox.report import formats
from nsbox.errors import NsboxError, UsageError
from nsbox.verify.results import RecipeResult

FORMATS = formats.names()  # one module each: nsbox/report/formats/

# Inside the sandbox /run is a private tmpfs (nsbox/sandbox): a report written
# there would vanish with the sandbox.
_SANDBOX_PRIVATE = ("/run",)


class OutputTarget(str):
    """The --output path (absolute, as given) that also holds an O_PATH fd of its
    directory, opened once when the path was checked (nsbox/safefs.py), and the
    name inside it: the report is written through that fd, never by path.

    A str, so everything that only shows or tests the path keeps working."""

    dir_fd: int
    name: str

    def __new__(cls, path: str, dir_fd: int, name: str) -> "OutputTarget":
        self = super().__new__(cls, path)
        self.dir_fd, self.name = dir_fd, name
        return self


# The outer nsbox checks --output and hands the sandbox the directory it opened
# ("FD:NAME"): the sandbox's user namespace sees other users' files as nobody's,
# so it could not judge a path as the caller's namespace does.
_FD_ENV = "NSBOX_OUTPUT_DIRFD"


def check_output_path(path: str, sandboxed: bool) -> OutputTarget:
    """PATH made absolute with its directory opened, or a UsageError: an --output
    FILE that cannot be written is refused before the kernel is touched."""
    if not path or path.endswith("/"):
        raise UsageError(f"--output {path!r} is a directory; give a file name")
    full = os.path.abspath(path)
    directory, name = os.path.split(full)
    if not name:
        raise UsageError(f"--output {path!r} is a directory; give a file name")
    handed = _from_outer() if sandboxed else None
    if handed is not None:
        fd, name = handed
        real = _fd_path(fd)
    else:
        fd, real, name = _open(path, directory, name)
    try:
        what = safefs.non_regular(fd, name)
        if what == "a directory":
            raise UsageError(f"--output {path!r} is a directory; give a file name")
        if what:
            raise UsageError(f"--output {path!r} exists and is {what}, not a regular file; "
                             f"nsbox replaces only regular files")
        kind = safefs.pseudo_fs(fd, real)
        if kind:
            raise UsageError(f"--output {path!r}: {real} is on {kind}, a kernel interface, not a place for files")
        if not safefs.writable(fd):
            raise UsageError(f"--output {path!r}: directory {real} is not writable")
        if sandboxed and any(real == p or real.startswith(p + "/") for p in _SANDBOX_PRIVATE):
            raise UsageError(f"--output {path!r}: {real} is private to the sandbox (a tmpfs there); "
                             f"write the report elsewhere, or use --on-host")
    except OSError as e:
        os.close(fd)
        raise UsageError(f"--output {path!r}: {e.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    if sandboxed and handed is None and not _inside_sandbox():
        os.set_inheritable(fd, True)  # for the sandbox this process starts next (sandbox.fork_into)
        os.environ[_FD_ENV] = f"{fd}:{name}"
    return OutputTarget(full, fd, name)


def _open(path: str, directory: str, name: str) -> tuple[int, str, str]:
    """(directory fd, its real path, file name) of --output PATH; a trusted symlink at
    FILE is followed (safefs rules), an untrusted one refused."""
    for _ in range(safefs.MAX_SYMLINKS):
        try:
            walked = safefs.walk(directory)
        except safefs.UnsafePath as e:
            if str(e).endswith("does not exist"):
                raise UsageError(f"--output {path!r}: directory {directory} does not exist") from None
            raise UsageError(f"--output {path!r}: {e}") from None
        try:
            st = os.stat(name, dir_fd=walked.fd, follow_symlinks=False)
        except FileNotFoundError:
            return walked.fd, walked.path, name
        except OSError as e:
            os.close(walked.fd)
            raise UsageError(f"--output {path!r}: {e.strerror}") from None
        if not stat.S_ISLNK(st.st_mode):
            return walked.fd, walked.path, name
        try:
            there = os.path.join(walked.path, name)
            safefs.check_symlink(st, walked.fd, there)
            target = os.readlink(name, dir_fd=walked.fd)
        except safefs.UnsafePath as e:
            raise UsageError(f"--output {path!r}: {e}") from None
        finally:
            os.close(walked.fd)
        directory, name = os.path.split(os.path.normpath(os.path.join(walked.path, target)))
        if not name:
            raise UsageError(f"--output {path!r} is a directory; give a file name")
    raise UsageError(f"--output {path!r}: too many levels of symbolic links")


def _inside_sandbox() -> bool:
    from nsbox.sandbox.enter import inside

    return inside()


def _from_outer() -> tuple[int, str] | None:
    """The directory fd and name the outer nsbox opened, when this is its sandbox."""
    handed = os.environ.pop(_FD_ENV, None)
    if handed is None or not _inside_sandbox():
        return None
    fd_text, _, name = handed.partition(":")
    try:
        fd = int(fd_text)
        if not stat.S_ISDIR(os.fstat(fd).st_mode) or not name or "/" in name:
            return None
    except (ValueError, OSError):
        return None
    os.set_inheritable(fd, False)  # not for --then's processes
    return fd, name


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def render(results: list[RecipeResult], fmt: str) -> str:
    """The report as text, in FMT (its module in nsbox/report/formats/)."""
    return formats.get(fmt).render(results)


def emit(results: list[RecipeResult], fmt: str, output: str | None, *, shown: int = 0,
         quiet: bool = False) -> None:
    """Print the report, or write it to OUTPUT. SHOWN: the first recipes' sections were
    printed already, as each finished (text to stdout); QUIET: no sections, the summary."""
    if output is None:
        f = formats.get(fmt)
        if f.print is not None:  # text: straight to the terminal, in colour where it is one
            f.print(results, shown=shown, quiet=quiet)
        else:
            sys.stdout.write(render(results, fmt))
            sys.stdout.flush()
        return
    write_atomically(output, render(results, fmt))


def write_atomically(path: str, content: str) -> None:
    """Write CONTENT as the report at PATH (an OutputTarget, or a path checked here first)."""
    target = path if isinstance(path, OutputTarget) else check_output_path(path, sandboxed=False)
    try:
        safefs.replace(target.dir_fd, target.name, content.encode("utf-8"))
    except OSError as e:
        raise NsboxError(f"cannot write the report to {path}: {e.strerror}") from None
