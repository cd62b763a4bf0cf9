"""Boot a kernel with virtme-ng, run one shell script in it as root, bring its files back.

The guest sees the host's root file system read-only (9p; virtme-ng puts a throwaway
overlay over /etc, /tmp, /var...), and one directory read-write: a fresh private
directory of this run (--rwdir), where the script writes what it brings back. Nothing
comes back any other way: the console is only kept for the error message of a VM that
did not start.

The VM is gone after every run, also after SIGKILL of nsbox: vng (and virtme-run and
QEMU under it) runs as pid 1 of a pid namespace of its own made by util-linux
`unshare --fork --kill-child`, and `setpriv --pdeathsig KILL` ties unshare to this
process. When nsbox dies, unshare gets SIGKILL, its child gets SIGKILL (--kill-child),
and the kernel kills every process of a pid namespace whose init died. As for the
sandbox in nsbox/sandbox/enter.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nsbox import tools
from nsbox.errors import InstallError, NsboxError
from nsbox.vm.accel import Accel, detect
from nsbox.vm.kernel import Kernel

MEMORY = "512M"
LIMIT_S = 1800.0  # a whole VM run; a hung guest is killed then
MAX_FILE = 64 << 20  # bytes read back from one guest file


class VmError(NsboxError):
    """The VM did not start, or its command did not finish (that kernel's recipes fail)."""


@dataclass(frozen=True)
class Tools:
    vng: str
    qemu: str
    setpriv: str
    unshare: str
    path: str  # PATH for vng: virtme-ng finds virtme-run and QEMU on it


def find_tools() -> Tools:
    """virtme-ng, QEMU and util-linux, or an InstallError naming what to install."""
    qemu = tools.find("qemu-system-x86_64")
    if qemu is None:
        raise InstallError("QEMU is not installed (apt install qemu-system-x86, or .ci/kernel-vm-setup)")
    vng = find_vng()
    if vng is None:
        raise InstallError(f"virtme-ng is not installed ({sys.executable} -m pip install virtme-ng, "
                           "or .ci/kernel-vm-setup)")
    path = ":".join(dict.fromkeys([os.path.dirname(vng), tools.SAFE_PATH]))
    return Tools(vng, qemu, tools.need("setpriv", "util-linux"), tools.need("unshare", "util-linux"), path)


def find_vng() -> str | None:
    """vng beside this Python (nsbox's virtualenv), else in a system directory. Only a
    root-owned file no one else can write: it runs as root."""
    beside = Path(sys.prefix) / "bin" / "vng"
    try:
        st = beside.stat()
        if os.access(beside, os.X_OK) and st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022:
            return str(beside)
    except OSError:
        pass
    return tools.find("vng")


@dataclass
class Outcome:
    """What came back from one VM run."""

    files: dict[str, bytes]  # name -> content of the regular files the script left in its directory
    exit_code: int  # vng's
    console: str  # the console's last lines, for an error message
    seconds: float


def run(kernel: Kernel, script: str, found: Tools, accel: Accel, limit_s: float = LIMIT_S) -> Outcome:
    """Boot KERNEL, run SCRIPT (sh; $NSBOX_VM_DIR is the shared directory) as root, return its files."""
    assert kernel.image is not None
    _remove_stale_shares()
    share = tempfile.mkdtemp(prefix=f"{_SHARE_PREFIX}{os.getpid()}-")
    log = tempfile.TemporaryFile()
    start = time.monotonic()
    try:
        os.chmod(share, 0o700)
        with open(os.path.join(share, "guest.sh"), "w") as f:
            f.write(f"NSBOX_VM_DIR={_sh(share)}\nexport NSBOX_VM_DIR\n{script}")
        cmd = [found.setpriv, "--pdeathsig", "KILL", found.unshare, "--pid", "--fork", "--kill-child"]
        if not tools.really_root():
            cmd += ["--user", "--map-root-user"]  # a pid namespace needs privilege; a user namespace gives it
        cmd += [found.vng, "--run", kernel.image, "--user", "root", "--memory", MEMORY, "--cwd", "/",
                "--rwdir", share, "--name", "nsbox-vm"]
        if not accel.kvm:
            cmd += ["--disable-kvm", "--cpus", "1"]  # TCG: one vCPU, the host's cores are shared
        cmd += ["--", f"sh {_sh(share)}/guest.sh"]
        env = {"PATH": found.path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
               "TERM": "dumb"}
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd="/")
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            raise VmError(f"kernel {kernel.label}: the VM did not finish within {limit_s:g} s") from None
        finally:
            if proc.poll() is None:  # also on Ctrl-C / SIGTERM (nsbox.signals.Terminated)
                proc.send_signal(signal.SIGKILL)  # unshare: --kill-child takes the VM with it
                proc.wait()
        log.seek(0)
        console = log.read()[-8192:].decode("utf-8", "replace")
        return Outcome(_collect(share), rc, console, time.monotonic() - start)
    finally:
        log.close()
        shutil.rmtree(share, ignore_errors=True)


_SHARE_PREFIX = "nsbox-vm-"


def _remove_stale_shares() -> None:
    """A share an nsbox killed with SIGKILL left behind (its VM died with it): only ours
    (this uid), only of a pid that no longer runs."""
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if not name.startswith(_SHARE_PREFIX):
            continue
        pid = name[len(_SHARE_PREFIX):].partition("-")[0]
        path = os.path.join(tmp, name)
        try:
            st = os.lstat(path)
            if not pid.isdigit() or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _collect(share: str) -> dict[str, bytes]:
    """Regular files the guest left: opened without following a symlink it may have planted."""
    out: dict[str, bytes] = {}
    for name in os.listdir(share):
        try:
            fd = os.open(os.path.join(share, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                with os.fdopen(fd, "rb", closefd=False) as f:
                    out[name] = f.read(MAX_FILE)
        finally:
            os.close(fd)
    return out


def _sh(text: str) -> str:
    import shlex

    return shlex.quote(text)


def accel_for(kernel: Kernel, found: Tools) -> Accel:
    assert kernel.bzimage is not None
    return detect(kernel.bzimage, found.qemu, found.setpriv)
