"""`nsbox run --kernel`: recipes in a throwaway VM (virtme-ng + QEMU) running Debian's kernel,
side by side with this host's kernel. Slow (a TCG boot is ~40-100 s here): the tests that
judge a report share one run (the `shared_vm_run` fixture, tests/support/vm_run.py, which
also runs the sctp recipes of test_kernel_protocols.py); the kill tests boot one each.

Skipped with the reason where QEMU, virtme-ng or a kernel under /boot are missing
(.ci/kernel-vm-setup installs them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import vm_run
from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]

VM_LIMIT_S = vm_run.VM_LIMIT_S
_vm_kernel = vm_run.vm_kernel
_vm_processes = vm_run.vm_processes  # QEMU processes of nsbox VMs, read from /proc


def _host_has(kind: str, extra: str = "") -> bool:
    p = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link add p type veth peer name q && "
                        f"ip link add i link p type {kind} {extra}"], capture_output=True, timeout=20)
    return p.returncode == 0


def _nsbox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsbox", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=VM_LIMIT_S)


def _by_kernel(doc: dict) -> dict[str, dict[str, dict]]:
    return {k["kernel"]: {r["recipe"]: r for r in k["results"]} for k in doc["kernels"]}


def _judge_guest(r: dict) -> None:
    """Built and passed in the guest. Before the interim-name fix (plan/steps.py) Debian's 6.1
    failed both with `ip link add eth0 link eth0.10 netns c1 type ipvlan mode l2: File exists`."""
    assert r["status"] != "skip", f"{r['recipe']} skipped in the guest: {r['skip_reason']}"
    assert r["status"] == "pass", r
    assert r["checks"] and all(c["passed"] for c in r["checks"])


def test_guest_runs_what_this_host_skips_side_by_side(shared_vm_run):
    """ipvlan (l2) and macvlan over 802.1q: on this host SKIP (no ipvlan, no 8021q), in the
    guest built for real; the matrix has both kernels."""
    deb, p = shared_vm_run.kernel, shared_vm_run.proc
    shared_vm_run.check_host()
    assert shared_vm_run.vms_left == set(), "a VM outlived nsbox"
    assert p.returncode in (0, 1), p.stderr
    assert f"nsbox: kernel {deb}: booting under QEMU/" in p.stderr
    doc = json.loads(p.stdout)
    assert [k["kernel"] for k in doc["kernels"]] == ["host", deb]
    assert doc["kernels"][1]["release"] == deb  # uname -r in the guest
    host, guest = _by_kernel(doc)["host"], _by_kernel(doc)[deb]
    # the matrix: every recipe of the shared run, each on both kernels
    assert set(doc["matrix"]) == set(vm_run.RECIPES)
    assert all(set(doc["matrix"][name]) >= {"host", deb} for name in ("ipvlan-mode", "macvlan-mode"))
    # a kernel lacking a feature still gives SKIP with the reason, in the matrix too
    if not _host_has("vlan", "id 10"):
        for name in ("ipvlan-mode", "macvlan-mode"):
            assert host[name]["status"] == "skip" and "this kernel lacks vlan" in host[name]["skip_reason"]
            assert doc["matrix"][name]["host"]["status"] == "skip"
    if not _host_has("ipvlan"):
        assert "this kernel lacks ipvlan" in host["ipvlan-mode"]["skip_reason"]
    for name in ("macvlan-mode", "ipvlan-mode"):
        _judge_guest(guest[name])


def test_guest_ipvlan_l3(shared_vm_run):
    """ipvlan-mode with mode=l3 (ipvlan-mode-l3 in the shared run: the shipped recipe's build)."""
    deb, p = shared_vm_run.kernel, shared_vm_run.proc
    shared_vm_run.check_host()
    assert p.returncode in (0, 1), p.stderr
    r = _by_kernel(json.loads(p.stdout))[deb]["ipvlan-mode-l3"]
    _judge_guest(r)
    assert {c["name"] for c in r["checks"]} >= {"tcp/7 c1->c2 (l3)", "icmp c2->c1 (l3)"}  # built in L3 mode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_vm_dies_with_nsbox(sig):
    """SIGKILL: the pid namespace tied to nsbox takes QEMU down; SIGTERM: nsbox ends it itself,
    exits 143, and removes the directory it shared with the guest."""
    deb = _vm_kernel()
    before = _vm_processes()
    proc = subprocess.Popen([sys.executable, "-m", "nsbox", "run", "none-mode", "--kernel", deb],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not (_vm_processes() - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        ours = _vm_processes() - before
        assert ours, "no VM started"
    finally:
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{pid}") for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in ours if os.path.exists(f"/proc/{pid}")], f"QEMU outlived nsbox ({sig.name})"
    if sig == signal.SIGTERM:
        assert rc == 128 + signal.SIGTERM
        assert not list(Path("/tmp").glob(f"nsbox-vm-{proc.pid}-*")), "the guest's shared directory was left"
