"""The leak detector itself: HostSnapshot and the process check must see each kind of leak.

Every other kernel test trusts `host_unchanged` (conftest.py) to notice what a lab
left behind. Here each facet is shown to fail: a real leak is made on the host with
the real tools (a pinned netns, a veth with an address, a route in a spare table, a
mount, a /run/nsbox file, a conntrack entry, an orphaned process), detected, and
removed again. iptables is shown on saved text instead, so that the test does not
instantiate legacy tables in the host for good.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes (and removes) real netns, links and mounts"),
    pytest.mark.tools("ip", "unshare", "conntrack"),
]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20)


def quiet(*argv: str) -> None:
    subprocess.run(argv, check=False, capture_output=True, text=True, timeout=20)


def detected(kernel, make, undo) -> list[str]:
    """Make a leak, return the diff the snapshot reports, undo it and check the diff is gone."""
    before = kernel.HostSnapshot.take()
    try:
        make()
        found = before.diff(kernel.HostSnapshot.take())
    finally:
        undo()
    assert before.diff(kernel.HostSnapshot.take()) == [], "undoing the leak did not restore the host"
    return found


def test_detects_a_pinned_netns(kernel) -> None:
    pin = "/run/netns/nsbtest-leak"
    made_dir = not os.path.isdir("/run/netns")

    def make():
        os.makedirs("/run/netns", exist_ok=True)
        Path(pin).touch()
        sh("unshare", f"--net={pin}", "true")

    def undo():
        quiet("umount", pin)
        Path(pin).unlink(missing_ok=True)
        if made_dir:
            os.rmdir("/run/netns")

    found = "\n".join(detected(kernel, make, undo))
    assert "+ nsbtest-leak" in found
    assert f"('{pin}', 'nsfs', 'nsfs')" in found  # the pin is a mount too


def test_detects_links_addresses_and_routes(kernel) -> None:
    def make():
        sh("ip", "link", "add", "nsbtest0", "type", "veth", "peer", "name", "nsbtest1")
        sh("ip", "addr", "add", "198.51.100.1/24", "dev", "nsbtest0")
        sh("ip", "route", "add", "blackhole", "198.51.101.0/24", "table", "4242")
        sh("ip", "-6", "route", "add", "blackhole", "2001:db8:4242::/48", "table", "4242")

    def undo():
        quiet("ip", "route", "del", "blackhole", "198.51.101.0/24", "table", "4242")
        quiet("ip", "-6", "route", "del", "blackhole", "2001:db8:4242::/48", "table", "4242")
        quiet("ip", "link", "del", "nsbtest0")

    found = "\n".join(detected(kernel, make, undo))
    assert ": nsbtest0" in found and ": nsbtest1" in found
    assert "nsbtest0 inet 198.51.100.1/24" in found
    assert '"dst": "198.51.101.0/24"' in found
    assert '"dst": "2001:db8:4242::/48"' in found


def test_detects_a_mount_and_a_journal(kernel) -> None:
    d = tempfile.mkdtemp(prefix="nsbtest-mnt-")
    journal = kernel.JOURNAL_DIR / "nsbtest-x.journal"
    had_dir = kernel.JOURNAL_DIR.exists()

    def make():
        sh("mount", "-t", "tmpfs", "nsbtest", d)
        kernel.JOURNAL_DIR.mkdir(mode=0o700, exist_ok=True)
        journal.write_text('{"kind": "netns", "path": "/run/netns/nsbtest-x"}\n')

    def undo():
        quiet("umount", d)
        journal.unlink(missing_ok=True)
        if not had_dir:
            kernel.JOURNAL_DIR.rmdir()

    try:
        found = "\n".join(detected(kernel, make, undo))
    finally:
        os.rmdir(d)
    assert f"('{d}', 'tmpfs', 'nsbtest')" in found
    assert "+ nsbtest-x.journal" in found


def test_detects_a_lab_conntrack_entry(kernel) -> None:
    def make():
        sh("conntrack", "-I", "-s", "203.0.113.9", "-d", "203.0.113.10", "-p", "tcp", "--sport", "1111",
           "--dport", "2222", "--state", "ESTABLISHED", "-t", "30")

    def undo():
        quiet("conntrack", "-D", "-s", "203.0.113.9", "-d", "203.0.113.10")

    found = "\n".join(detected(kernel, make, undo))
    assert "tcp src=203.0.113.9 dst=203.0.113.10 sport=1111 dport=2222" in found


def test_detects_an_orphaned_process(kernel) -> None:
    """A process whose parent is gone is re-parented to the test process (a subreaper),
    so it still counts as ours."""
    guard = kernel.HostGuard.now()
    sh("sh", "-c", "sleep 30 >/dev/null 2>&1 &")  # sh exits at once; sleep is orphaned
    try:
        found = guard.problems(within=0.3)
    finally:
        for pid, cmd in kernel.descendants().items():
            if pid not in guard.procs_before and cmd.startswith("sleep 30"):
                os.kill(pid, 9)
        kernel.wait_until(lambda: not [p for p in kernel.descendants() if p not in guard.procs_before], 5)
    assert any("sleep 30" in line for line in found), found
    assert guard.problems(within=0) == []


def test_iptables_diff_ignores_counters_and_comments_only(kernel) -> None:
    from_host = kernel.HostSnapshot
    norm = kernel.normalize_iptables_save
    a = norm("# Generated by iptables-save v1.8.9 on Fri\n*filter\n:INPUT ACCEPT [5:289]\n:FORWARD DROP [0:0]\n"
             "-A FORWARD -j DOCKER-USER\nCOMMIT\n# Completed on Fri\n")
    b = norm("# Generated by iptables-save v1.8.9 on Sat\n*filter\n:INPUT ACCEPT [9:999]\n:FORWARD DROP [1:2]\n"
             "-A FORWARD -j DOCKER-USER\nCOMMIT\n# Completed on Sat\n")
    assert a == b == ("*filter", ":INPUT ACCEPT", ":FORWARD DROP", "-A FORWARD -j DOCKER-USER", "COMMIT")
    c = norm("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DOCKER-USER\nCOMMIT\n")
    diff = from_host(ordered={"iptables-legacy-save": a}).diff(from_host(ordered={"iptables-legacy-save": c}))
    assert "    -:FORWARD DROP" in diff and "    +:FORWARD ACCEPT" in diff, diff
    gone = from_host(ordered={"iptables-legacy-save": a}).diff(from_host(ordered={"iptables-legacy-save": ()}))
    assert "    --A FORWARD -j DOCKER-USER" in gone, gone


def test_conntrack_keys_ignore_timers_and_state(kernel) -> None:
    keys = kernel.lab_conntrack_keys
    one = keys("tcp      6 117 TIME_WAIT src=172.17.0.2 dst=203.0.113.1 sport=5 dport=80 src=203.0.113.1 "
               "dst=203.0.113.2 sport=80 dport=5 [ASSURED] mark=0 use=1\n"
               "udp      17 20 src=192.0.2.2 dst=192.0.2.1 sport=1 dport=53 src=192.0.2.1 dst=192.0.2.2 sport=53 dport=1\n")
    two = keys("tcp      6 3 CLOSE src=172.17.0.2 dst=203.0.113.1 sport=5 dport=80 src=203.0.113.1 "
               "dst=203.0.113.2 sport=80 dport=5 mark=0 use=2\n")
    assert one == two == {"tcp src=172.17.0.2 dst=203.0.113.1 sport=5 dport=80 src=203.0.113.1 dst=203.0.113.2 "
                          "sport=80 dport=5"}


def test_other_labs_and_what_labs_share_are_not_judged(kernel) -> None:
    """Another user's live lab (foreign at either snapshot) and a lab already there before the
    test are not judged, nor /run/netns and the markers while such a lab is seen; a lab that
    appears during the test and is nobody else's is."""
    snap, netns, run = kernel.HostSnapshot, "named netns (ip netns list)", "/run/nsbox entries"
    mounts = "mounts (/proc/self/mountinfo: mount point, fs type, source)"
    mine, theirs, old = "nsb000000000001", "nsb00000000000f", "nsb0000000000aa"
    before = snap(sets={netns: frozenset({f"{old}-host"}), run: frozenset({f"{old}-x.journal"}),
                        mounts: frozenset(), "/run/netns directory": frozenset()}, labs=frozenset({old}))
    after = snap(sets={netns: frozenset({f"{theirs}-host", f"{mine}-c1"}),
                       run: frozenset({f"{theirs}-y.journal", "netns-dir-created", f"{mine}-z.journal"}),
                       mounts: frozenset({("/run/netns", "ext4", "/dev/vda"), (f"/run/netns/{theirs}-host", "nsfs", "nsfs"),
                                          (f"/run/netns/{mine}-c1", "nsfs", "nsfs")}),
                       "/run/netns directory": frozenset({"exists"})}, foreign=frozenset({theirs}))
    found = "\n".join(before.diff(after))
    assert theirs not in found and old not in found and "netns-dir-created" not in found, found
    assert "'/run/netns', 'ext4'" not in found and "+ exists" not in found, found
    assert f"+ {mine}-c1" in found and f"+ {mine}-z.journal" in found and f"/run/netns/{mine}-c1" in found
    # alone on the host, the shared items count again
    alone = snap(sets={**after.sets, netns: frozenset({f"{mine}-c1"})})
    assert "+ exists" in "\n".join(snap(sets={**before.sets}).diff(alone))


def test_a_stray_file_in_run_nsbox_is_judged_beside_another_lab(kernel) -> None:
    """Only nsbox's two markers are shared: any other new /run/nsbox entry still counts."""
    snap, run = kernel.HostSnapshot, "/run/nsbox entries"
    before = snap(sets={run: frozenset()})
    after = snap(sets={run: frozenset({"nsbtest-x.journal", "netns-mount-created"})},
                 foreign=frozenset({"nsb00000000000f"}))
    found = "\n".join(before.diff(after))
    assert "+ nsbtest-x.journal" in found and "netns-mount-created" not in found, found
