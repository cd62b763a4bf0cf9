"""KVM where it works, QEMU's emulation (TCG) otherwise, decided before the real boot.

`/dev/kvm` existing is not enough: on some cloud machines it is a PVM device (the
kvm_pvm module) that stock kernels cannot use (QEMU aborts on an MSR, or the guest
hangs early). So KVM is tried: the kernel boots under it with no root file system,
and KVM works when the kernel gets as far as its panic about the missing root
(about a second under KVM). Anything else, in TRIAL_S, means TCG.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TRIAL_S = 15.0
_REACHED = (b"Kernel panic", b"VFS: ", b"Run /init")


@dataclass(frozen=True)
class Accel:
    kvm: bool
    why: str  # one line: why this one

    @property
    def name(self) -> str:
        return "KVM" if self.kvm else "TCG"


def detect(bzimage: str, qemu: str, setpriv: str | None) -> Accel:
    """Whether BZIMAGE boots under KVM here (QEMU binary QEMU)."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return Accel(False, "no /dev/kvm")
    if not os.access(kvm, os.R_OK | os.W_OK):
        return Accel(False, "/dev/kvm is not usable by this user")
    modules = Path("/sys/module")
    if (modules / "kvm_pvm").exists() and not any((modules / m).exists() for m in ("kvm_intel", "kvm_amd")):
        return Accel(False, "/dev/kvm is a PVM device (kvm_pvm) that stock kernels cannot use")
    took, reached = _trial(bzimage, qemu, setpriv)
    if reached:
        return Accel(True, f"a trial boot under KVM took {took:.1f} s")
    return Accel(False, f"a trial boot under KVM did not start the kernel within {TRIAL_S:g} s")


def _trial(bzimage: str, qemu: str, setpriv: str | None) -> tuple[float, bool]:
    cmd = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults", "-display", "none",
           "-no-reboot", "-serial", "stdio", "-monitor", "none", "-kernel", bzimage,
           "-append", "console=ttyS0 panic=-1 root=/dev/nsbox-no-root"]
    if setpriv:
        cmd = [setpriv, "--pdeathsig", "KILL", *cmd]  # gone with nsbox, even after SIGKILL
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while time.monotonic() - start < TRIAL_S:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                seen = (seen + chunk)[-65536:]
                if any(m in seen for m in _REACHED):
                    return time.monotonic() - start, True
        return time.monotonic() - start, False
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
