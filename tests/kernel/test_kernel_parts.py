"""A lab across machines on one machine: `nsbox up pod-to-pod --set cni=vxlan --part …
--underlay …` twice, each part in a throwaway namespace standing for a host, the two
"hosts" joined by a veth pair standing for the wire between them (the VMs' private
network in vagrant/Vagrantfile.multi).

Observed independently of nsbox's report: the node's eth0 is a macvlan (`ip -d -j link`
in the node), the host keeps only its own NIC (`ip -j link` in the host namespace),
tcpdump on the wire sees VXLAN (UDP 8472) carrying pod-to-pod packets whose inner source
is the client pod's own address (no NAT across the hosts), and after `down`, or after
the holder is killed, the host namespace holds exactly what the test made.

Everything here is made by the test (namespaces named after its pid, a veth pair inside
them) and deleted by it; the labs are ended with `nsbox down`, or by the holder's pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.support import paths

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes namespaces standing for two hosts"),
    pytest.mark.tools("unshare", "nsenter", "ip", "tcpdump"),
]

REPO = paths.REPO
PYTHON = os.environ.get("NSBOX_TEST_PYTHON", "/opt/nsbox/venv/bin/python")
POD_A, POD_B = "10.244.1.2", "10.244.2.2"  # n1-p1 and n2-p1 of pod-to-pod


def nsbox(*args: str, host: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m nsbox ARGS`, in the namespace HOST (a "host") when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    env["PYTHONPATH"] = str(REPO)
    py = PYTHON if os.path.exists(PYTHON) else "python3"
    argv = [py, "-m", "nsbox", *args]
    if host:
        # nsenter, not `ip netns exec`: that one's private mount namespace would hide the
        # pins an --on-host lab makes in /run/netns, and take them with it
        argv = ["nsenter", f"--net=/run/netns/{host}", *argv]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(cp.args)}\nexit {cp.returncode}\n--- stdout\n{cp.stdout[-3000:]}\n--- stderr\n{cp.stderr[-3000:]}"


def links(host: str) -> list[str]:
    out = subprocess.run(["ip", "-n", host, "-j", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(l["ifname"] for l in json.loads(out.stdout))


@pytest.fixture
def hosts():
    """Two namespaces standing for two hosts, a veth pair the wire between them."""
    a, b = f"nsbt{os.getpid()}a", f"nsbt{os.getpid()}b"
    # `ip netns add` makes /run/netns and bind-mounts it onto itself (shared) where they are
    # missing, and `ip netns del` leaves both: what this fixture made, it undoes.
    had_dir = os.path.isdir("/run/netns")
    had_mount = _is_mount("/run/netns")
    subprocess.run(["ip", "netns", "add", a], check=True)
    try:
        subprocess.run(["ip", "netns", "add", b], check=True)
        subprocess.run(["ip", "-n", a, "link", "add", "wire", "type", "veth", "peer", "name", "wire", "netns", b],
                       check=True)
        for h in (a, b):
            subprocess.run(["ip", "-n", h, "link", "set", "wire", "up"], check=True)
        yield a, b
    finally:
        for h in (a, b):
            subprocess.run(["ip", "netns", "del", h], capture_output=True)
        if not had_mount and _is_mount("/run/netns") and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], capture_output=True)
        if not had_dir and os.path.isdir("/run/netns") and not os.listdir("/run/netns"):
            os.rmdir("/run/netns")


def _is_mount(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _up(host: str, lab: str, part: str, *extra: str) -> subprocess.CompletedProcess:
    return nsbox("up", "pod-to-pod", "--set", "cni=vxlan", "--name", lab, "--part", part,
                 "--underlay", "wire", *extra, host=host)


@pytest.mark.parametrize("mode", ["sandbox", "on-host"])
def test_two_parts_meet_over_the_wire(hosts, mode):
    a, b = hosts
    lab_a, lab_b = f"pa{os.getpid()}", f"pb{os.getpid()}"
    extra = ("--on-host",) if mode == "on-host" else ()
    try:
        up = _up(a, lab_a, "node1,outside", *extra)
        assert up.returncode == 0, show(up)
        assert "part node1 outside" in up.stdout, show(up)
        up = _up(b, lab_b, "node2", *extra)
        assert up.returncode == 0, show(up)

        # The node's eth0 is a macvlan child on the host's NIC; the host keeps its own links only.
        cp = nsbox("exec", lab_a, "node1", "--", "ip", "-d", "-j", "addr", "show", "eth0")
        eth0 = json.loads(cp.stdout)[0]
        assert eth0["linkinfo"]["info_kind"] == "macvlan", eth0
        assert any(x["local"] == "192.168.70.11" for x in eth0["addr_info"]), eth0
        assert links(a) == ["lo", "wire"] and links(b) == ["lo", "wire"]

        # verify on each part while tcpdump on the wire watches: VXLAN, pod addresses inside.
        cap = subprocess.Popen(["ip", "netns", "exec", a, "timeout", "20", "tcpdump", "-l", "-ni", "wire",
                                "-T", "vxlan", "-c", "6", "udp port 8472 and src host 192.168.70.11"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            time.sleep(1.0)  # tcpdump listening
            va = nsbox("verify", lab_a, "--format", "json")
            vb = nsbox("verify", lab_b, "--format", "json")
            seen, _ = cap.communicate(timeout=30)
        finally:
            if cap.poll() is None:
                cap.kill()
                cap.wait()
        assert va.returncode == 0 and vb.returncode == 0, show(va) + show(vb)
        checks_a = {c["name"]: c for c in json.loads(va.stdout)["results"][0]["checks"]}
        checks_b = {c["name"]: c for c in json.loads(vb.stdout)["results"][0]["checks"]}
        cross = "tcp/7 n1-p1->n2-p1 (across nodes, no NAT)"
        assert checks_a[cross]["passed"] and cross not in checks_b
        assert checks_b["tcp/7 n2-p1->n1-p1 (across nodes, no NAT)"]["passed"]
        assert checks_a["http n1-p1->outside (masqueraded to node1)"]["passed"]  # same part: fully judged
        assert "reach only" in va.stderr, show(va)
        # on the wire: node1 -> node2 in VXLAN, inside it n1-p1's own address (no NAT between pods)
        assert "192.168.70.11." in seen and ".8472: VXLAN" in seen, seen
        assert f"IP {POD_A}." in seen and f"> {POD_B}.7:" in seen, seen
    finally:
        nsbox("down", lab_a)
        nsbox("down", lab_b)
    assert links(a) == ["lo", "wire"] and links(b) == ["lo", "wire"]


@pytest.mark.parametrize("mode", ["sandbox", "on-host"])
def test_killed_holder_takes_its_underlay_with_it(hosts, mode):
    """SIGKILL to a part's holder: sandboxed, the kernel removes the sandbox and the macvlan
    child with it; --on-host, `nsbox clean` removes the node's namespace and the child with
    it. The host's NIC stays, alone."""
    a, _b = hosts
    lab = f"pk{os.getpid()}"
    up = _up(a, lab, "node1", *(["--on-host"] if mode == "on-host" else []))
    assert up.returncode == 0, show(up)
    try:
        st = json.loads(nsbox("status", lab, "--format", "json").stdout)["labs"][0]
        os.kill(st["holder_pid"], signal.SIGKILL)
        if mode == "on-host":
            netns = st["nodes"]["node1"]["netns"]
            cp = subprocess.run(["ip", "netns", "exec", netns, "ip", "-d", "-j", "link", "show", "eth0"],
                                capture_output=True, text=True)
            assert json.loads(cp.stdout)[0]["linkinfo"]["info_kind"] == "macvlan"  # still there: clean's job
            cp = nsbox("clean")
            assert cp.returncode == 0, show(cp)
            assert not Path(f"/run/netns/{netns}").exists()
        deadline = time.monotonic() + 10
        while links(a) != ["lo", "wire"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert links(a) == ["lo", "wire"]
    finally:
        nsbox("down", lab)


@pytest.mark.parametrize("args, says", [
    (("--part", "node9", "--underlay", "wire"), "--part node9: no machine or node of pod-to-pod"),
    (("--part", "node1", "--underlay", "nosuch0"), "--underlay nosuch0: this host has no such interface"),
    (("--part", "node1", "--underlay", "192.0.2.99"), "--underlay 192.0.2.99: no interface of this host holds"),
    (("--part", "node1"), "give --underlay IFACE|ADDR"),
    (("--underlay", "wire"), "--underlay goes with --part"),
])
def test_bad_part_or_underlay_is_one_line_exit_2(hosts, args, says):
    a, _b = hosts
    cp = nsbox("up", "pod-to-pod", "--set", "cni=vxlan", "--name", f"px{os.getpid()}", *args, host=a)
    assert cp.returncode == 2, show(cp)
    assert says in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, show(cp)
    assert links(a) == ["lo", "wire"]  # nothing made on the host
    assert json.loads(nsbox("status", "--format", "json").stdout)["labs"] == [] or \
        f"px{os.getpid()}" not in nsbox("status").stdout
