"""One `nsbox run --kernel host --kernel DEBIAN` shared by the VM tests that only judge a
report (test_kernel_vm.py, test_kernel_protocols.py): a TCG boot is most of a VM run
(~40-60 s on 2 shared cores), so one boot serves them all instead of one boot each.

The run is what the separate runs were, side by side in one command:
- ipvlan-mode and macvlan-mode with `--set vlan=10` (the shipped recipes, as before);
- ipvlan-mode in L3 on eth0 itself, as `ipvlan-mode-l3` (the shipped recipe's own build
  with mode=l3, vlan=0: `--set` is global, so it cannot be passed per recipe);
- the sctp recipes of test_kernel_protocols (sctp-echo, sctp-echo-open), unchanged but
  for a `vlan` parameter they ignore (again: `--set vlan=10` reaches every recipe).
Each test keeps its own assertions on its own part of the report; the tests that need a VM
of their own (killing nsbox mid-run) still boot one each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

VM_LIMIT_S = 600
RECIPES = ("ipvlan-mode", "macvlan-mode", "ipvlan-mode-l3", "sctp-echo", "sctp-echo-open")
KERNELS = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*"))

# Both sctp recipes get the `vlan` parameter the shared --set gives every recipe.
_IGNORED_VLAN = '''
from nsbox.recipe import Param
VLAN = Param("vlan", 0, "ignored: the shared run's --set vlan=10 is for ipvlan-mode and macvlan-mode")
'''

_IPVLAN_L3 = '''

from nsbox.recipe import get as _get


@recipe("ipvlan-mode-l3", params=[VLAN])
def build_ipvlan_l3(lab, vlan):
    """The shipped ipvlan-mode with mode=l3 on eth0 itself (as `--set mode=l3`)."""
    _get("ipvlan-mode").build_fn(lab, mode="l3", vlan=0, docker="29")
'''


@dataclass
class SharedRun:
    kernel: str                       # the guest's kernel (the newest under /boot)
    proc: subprocess.CompletedProcess
    vms_left: set[int]                # QEMU processes of ours still running after nsbox exited
    host_left: str = ""               # what the run left on the real host (tests/support/host.py)

    def check_host(self) -> None:
        assert not self.host_left, self.host_left

    @property
    def doc(self) -> dict:
        return json.loads(self.proc.stdout)

    def results(self, kernel: str) -> dict[str, dict]:
        """{recipe: its JSON result} on KERNEL ('host' or the guest's)."""
        return {r["recipe"]: r for k in self.doc["kernels"] if k["kernel"] == kernel for r in k["results"]}


def vm_kernel() -> str:
    """The guest's kernel (the newest under /boot); skips the test, with what is missing."""
    from nsbox import tools
    from nsbox.vm.boot import find_vng

    missing = [what for what, ok in (("qemu-system-x86_64", tools.find("qemu-system-x86_64")),
                                     ("virtme-ng (vng)", find_vng()), ("a kernel under /boot", KERNELS)) if not ok]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (run .ci/kernel-vm-setup)")
    return KERNELS[-1]


def vm_processes() -> set[int]:
    """QEMU processes of an nsbox VM (vng --name nsbox-vm), read from /proc: no nsbox code involved."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"qemu-system-x86_64") and b"nsbox-vm" in b" ".join(cmd):
                out.add(int(d.name))
    return out


def recipe_dir(where: Path, sctp_recipe: str) -> Path:
    """The shared run's recipe folder: the sctp recipes (SCTP_RECIPE: test_kernel_protocols's
    RECIPE text) given the ignored vlan parameter, and ipvlan-mode-l3."""
    text = textwrap.dedent(sctp_recipe)
    for name in ("sctp-echo", "sctp-echo-open"):
        old = f'@recipe("{name}")'
        assert text.count(old) == 1, f"the sctp recipe text changed: no {old}"
        text = text.replace(old, f'@recipe("{name}", params=[VLAN])')
    for fn in ("build", "build_open"):
        old = f"def {fn}(lab):"
        assert text.count(old) == 1, f"the sctp recipe text changed: no {old}"
        text = text.replace(old, f"def {fn}(lab, vlan):")
    where.mkdir(parents=True, exist_ok=True)
    (where / "vm_shared.py").write_text(_IGNORED_VLAN + text + _IPVLAN_L3)
    return where


def run(kernel: str, recipes: Path) -> SharedRun:
    before = vm_processes()
    p = subprocess.run([sys.executable, "-m", "nsbox", "run", *RECIPES, "--recipes", str(recipes), "--set", "vlan=10",
                        "--kernel", "host", "--kernel", kernel, "--format", "json", "--timeout", "0.5"],
                       capture_output=True, text=True, cwd=REPO, timeout=VM_LIMIT_S)
    return SharedRun(kernel, p, vm_processes() - before)
