"""Live labs: up -> status -> exec -> shell -> verify -> down, by hand as a learner would.

bridge-mode in the sandbox (as root and as uid 65534) and --on-host. Each tool a
learner reaches for runs in a node and is judged by what it prints about the lab
(the node's own hostname, its address, the other node's web server answering,
tcpdump seeing the ping). verify is asked twice, then a route is deleted by hand
in c1 (verify must fail, naming c1 -> internet), restored (verify passes again).
A holder killed with SIGKILL leaves nothing (the autouse host snapshot), and
status calls its lab gone. uid 65534 cannot enter root's lab.

Everything started here is ended by pid (`nsbox down`, or kill of the pid status names).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.checkout import world_readable_copy
from tests.support.cmd import describe

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds labs, and switches to uid 65534"),
    pytest.mark.tools("unshare", "nsenter", "setpriv", "ip", "script"),
]

NOBODY = 65534
PYTHON = os.environ.get("NSBOX_TEST_PYTHON", "/opt/nsbox/venv/bin/python")
C1, C2 = "172.17.0.2", "172.17.0.3"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# tool -> (command run in c1, a string its output must contain). Each names something only
# this lab's c1 can see: a tool that ran on the host, or failed, does not print it.
TOOLS: dict[str, tuple[list[str], str]] = {
    "hostname": (["hostname"], "c1"),
    "hosts": (["getent", "hosts", "c1"], C1),
    "ip": (["ip", "-br", "addr", "show", "eth0"], f"{C1}/16"),
    "ps": (["ps", "aux"], "node.py"),
    # the lab's web server on :80, with the process that owns it (ss -p)
    "ss": (["sh", "-c", "ss -Htnlp 'sport = :80'"], "users:(("),
    "iptables": (["iptables", "-S", "INPUT"], "-P INPUT ACCEPT"),
    "nft": (["nft", "list", "ruleset"], ""),
    # in the host node, where the lab's rules make conntrack track (c1 has none)
    "conntrack": (["sh", "-c", f"ping -c1 -W2 {C2} >/dev/null; conntrack -L -p icmp 2>&1"], f"dst={C2}"),
    "ping": (["ping", "-c1", "-W2", C2], "1 received"),
    "curl": (["curl", "-s", "-m3", f"http://{C2}/host"], "c2"),
    # bridge-mode has no DNS server: c2's "port unreachable" is dig's answer, from the lab
    "dig": (["sh", "-c", f"dig +time=1 +tries=1 @{C2} example.test; true"], f"{C2}#53: connection refused"),
    "tcpdump": (["sh", "-c", f"(sleep 1; ping -c3 -i0.3 {C2}) >/dev/null & timeout 10 tcpdump -ni eth0 -c2 icmp 2>&1"],
                "2 packets captured"),
}
IN_NODE = {"conntrack": "host"}  # where a tool runs when not in c1
# As uid 65534 the sandbox maps only that user, as root, and the kernel makes it deny
# setgroups (user_namespaces(7)): tcpdump cannot drop to its `tcpdump` user there, so
# the learner's command is `tcpdump -Z root` (nsbox makes setgroups a no-op for it).
AS_NOBODY = {"tcpdump": (["sh", "-c", f"(sleep 1; ping -c3 -i0.3 {C2}) >/dev/null & "
                                      f"timeout 10 tcpdump -Z root -ni eth0 -c2 icmp 2>&1"], "2 packets captured")}


class Runner:
    """`python -m nsbox` as root, or as uid 65534 from a world-readable copy of the checkout."""

    def __init__(self, kernel, tree: Path | None = None) -> None:
        self.kernel = kernel
        self.tree = tree

    def argv(self, *args: str) -> list[str]:
        if self.tree is None:
            return [PYTHON if os.path.exists(PYTHON) else "python3", "-m", "nsbox", *args]
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", PYTHON, "-m", "nsbox", *args]

    def env(self) -> dict[str, str]:
        if self.tree is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
            env["PYTHONPATH"] = str(self.kernel.REPO)
            return env
        return {"PATH": PATH, "HOME": "/tmp", "PYTHONPATH": str(self.tree), "LANG": "C.UTF-8"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), cwd=self.tree or self.kernel.REPO, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, start_new_session=True)


@pytest.fixture(scope="module")
def tree():
    """nsbox/ and recipes/ copied where uid 65534 can read them."""
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is missing: run install.sh (or set NSBOX_TEST_PYTHON)")
    with world_readable_copy("nsbox-live-") as d:
        yield d


def status(nsbox: Runner, lab: str) -> dict:
    cp = nsbox.run("status", lab, "--format", "json")
    labs = json.loads(cp.stdout)["labs"]
    assert len(labs) == 1, describe(cp)
    return labs[0]


def down(nsbox: Runner, lab: str) -> None:
    """Best effort at the end of a test, whatever happened: the lab's holder ends."""
    nsbox.run("down", lab)


def session(nsbox: Runner, lab: str, extra: tuple[str, ...] = (),
            variants: dict[str, tuple[list[str], str]] | None = None) -> None:
    up = nsbox.run("up", "bridge-mode", "--name", lab, *extra)
    assert up.returncode == 0, describe(up)
    try:
        st = status(nsbox, lab)
        assert st["state"] == "up", st
        c1 = {i["ifname"]: i for i in st["nodes"]["c1"]["interfaces"]}
        assert f"{C1}/16" in c1["eth0"]["addresses"], st

        for tool, (cmd, expect) in {**TOOLS, **(variants or {})}.items():
            node = IN_NODE.get(tool, "c1")
            cp = nsbox.run("exec", lab, node, "--", *cmd, timeout=60)
            assert cp.returncode == 0 and expect in cp.stdout, f"{tool} in {node}:\n{describe(cp)}"
        assert nsbox.run("exec", lab, "c2", "--", "hostname").stdout.strip() == "c2"

        # A shell on a terminal: the prompt says which lab and node; the shell is in c1.
        shell = " ".join(nsbox.argv("shell", lab, "c1"))
        cp = subprocess.run(["script", "-qec", shell, "/dev/null"], input="hostname\nip -br addr show eth0\nexit\n",
                            cwd=nsbox.tree or nsbox.kernel.REPO, env=nsbox.env(), capture_output=True, text=True,
                            timeout=60, start_new_session=True)
        assert f"({lab} c1)# " in cp.stdout and f"{C1}/16" in cp.stdout, describe(cp)

        for _ in range(2):
            cp = nsbox.run("verify", lab)
            assert cp.returncode == 0 and "11 of 11 checks passed" in cp.stdout, describe(cp)
        # Broken by hand: c1 without its default route cannot reach the internet through NAT.
        cp = nsbox.run("exec", lab, "c1", "--", "ip", "route", "del", "default")
        assert cp.returncode == 0, describe(cp)
        cp = nsbox.run("verify", lab, "--format", "json")
        assert cp.returncode == 1, describe(cp)
        failed = [c["name"] for c in json.loads(cp.stdout)["results"][0]["checks"] if not c["passed"]]
        assert "http c1->internet (NAT)" in failed, failed
        cp = nsbox.run("exec", lab, "c1", "--", "ip", "route", "add", "default", "via", "172.17.0.1")
        assert cp.returncode == 0, describe(cp)
        cp = nsbox.run("verify", lab)
        assert cp.returncode == 0, describe(cp)

        holder = st["holder_pid"]
        cp = nsbox.run("down", lab)
        assert cp.returncode == 0, describe(cp)
        nsbox.kernel.wait_until(lambda: not nsbox.kernel.pid_alive(holder), 5)
        assert not nsbox.kernel.pid_alive(holder)
        # Only this lab is judged: another suite's live lab may share the host.
        assert lab not in [x["name"] for x in json.loads(nsbox.run("status", "--format", "json").stdout)["labs"]]
    finally:
        down(nsbox, lab)


def test_live_lab_in_the_sandbox_as_root(kernel) -> None:
    session(Runner(kernel), "live-sbx")


def test_live_lab_on_host(kernel) -> None:
    session(Runner(kernel), "live-host", ("--on-host",))


def test_live_lab_as_nobody(kernel, tree) -> None:
    nsbox = Runner(kernel, tree)
    session(nsbox, "live-nobody", variants=AS_NOBODY)
    assert not Path(f"/tmp/nsbox-{NOBODY}").exists(), "the registry directory outlived the last lab"


def test_tcpdump_as_nobody_needs_z_root(kernel, tree) -> None:
    """What the kernel refuses unprivileged, and what still works: documented, so a change shows."""
    nsbox = Runner(kernel, tree)
    assert nsbox.run("up", "bridge-mode", "--name", "live-nobody-td").returncode == 0
    try:
        cp = nsbox.run("exec", "live-nobody-td", "c1", "--", "cat", "/proc/self/setgroups")
        assert cp.stdout.strip() == "deny", describe(cp)
        # Its default user is not mapped in the lab's user namespace.
        cp = nsbox.run("exec", "live-nobody-td", "c1", "--", "timeout", "5", "tcpdump", "-ni", "eth0", "-c1")
        assert cp.returncode != 0 and "Couldn't change to 'tcpdump'" in cp.stderr, describe(cp)
        # The shim is what lets -Z root through: without it (plain nsenter), setgroups fails.
        pid = status(nsbox, "live-nobody-td")["nodes"]["c1"]["pid"]
        cp = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "nsenter",
                             f"--target={pid}", "--user", "--preserve-credentials", "--mount", "--net", "--",
                             "timeout", "5", "tcpdump", "-Z", "root", "-ni", "eth0", "-c1"],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode != 0 and "Operation not permitted" in cp.stderr, describe(cp)
    finally:
        down(nsbox, "live-nobody-td")


def test_killed_holder_leaves_nothing_and_status_says_gone(kernel) -> None:
    nsbox = Runner(kernel)
    assert nsbox.run("up", "bridge-mode", "--name", "live-kill").returncode == 0
    try:
        st = status(nsbox, "live-kill")
        nodes = [n["pid"] for n in st["nodes"].values()]
        os.kill(st["holder_pid"], signal.SIGKILL)
        kernel.wait_until(lambda: not any(kernel.pid_alive(p) for p in [st["holder_pid"], *nodes]), 5)
        assert not any(kernel.pid_alive(p) for p in nodes), "a node process outlived its holder"
        cp = nsbox.run("status", "live-kill")
        assert cp.returncode == 1 and "gone" in cp.stdout, describe(cp)
        cp = nsbox.run("exec", "live-kill", "c1", "--", "true")
        assert cp.returncode == 1 and "gone" in cp.stderr, describe(cp)
        cp = nsbox.run("down", "live-kill")
        assert cp.returncode == 0, describe(cp)
        assert nsbox.run("status", "live-kill").returncode == 2
    finally:
        down(nsbox, "live-kill")
    # The host snapshot (autouse) then finds no namespace, link, mount or process left.


def test_killed_on_host_holder_is_cleaned(kernel) -> None:
    nsbox = Runner(kernel)
    assert nsbox.run("up", "bridge-mode", "--on-host", "--name", "live-kill-host").returncode == 0
    try:
        st = status(nsbox, "live-kill-host")
        names = list(st["nodes"]["c1"]["netns"] for _ in [0])
        assert names[0] in kernel.netns_list()
        os.kill(st["holder_pid"], signal.SIGKILL)
        kernel.wait_until(lambda: not kernel.pid_alive(st["holder_pid"]), 5)
        cp = nsbox.run("status", "live-kill-host")
        assert cp.returncode == 1 and "gone" in cp.stdout, describe(cp)
        cp = nsbox.run("clean")
        assert cp.returncode == 0, describe(cp)
        assert names[0] not in kernel.netns_list(), describe(cp)
        assert nsbox.run("status", "live-kill-host").returncode == 2
    finally:
        down(nsbox, "live-kill-host")


def test_nobody_cannot_enter_roots_lab(kernel, tree) -> None:
    root = Runner(kernel)
    assert root.run("up", "bridge-mode", "--name", "live-root").returncode == 0
    try:
        pid = status(root, "live-root")["nodes"]["c1"]["pid"]
        # With nsbox: root's registry is not nobody's; it has no such lab.
        cp = Runner(kernel, tree).run("exec", "live-root", "c1", "--", "true")
        assert cp.returncode == 2 and "no live lab" in cp.stderr, describe(cp)
        # Without it, straight at the node's namespaces: the kernel refuses.
        cp = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "nsenter",
                             f"--target={pid}", "--user", "--preserve-credentials", "--mount", "--net", "--", "true"],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode != 0, describe(cp)
        # Positive control: root can.
        cp = subprocess.run(["nsenter", f"--target={pid}", "--user", "--mount", "--net", "--", "true"],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, describe(cp)
    finally:
        down(root, "live-root")


def test_bad_lab_name_is_one_line_and_builds_nothing(kernel) -> None:
    nsbox = Runner(kernel)
    for bad in ("a\nb", "../x", "-x", "a" * 40):
        cp = nsbox.run("up", "bridge-mode", "--name", bad)
        assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1, describe(cp)
    names = [x["name"] for x in json.loads(nsbox.run("status", "--format", "json").stdout)["labs"]]
    assert not set(names) & {"a\nb", "../x", "-x", "a" * 40}, names  # another suite's labs may be up


def test_names_resolve_as_on_a_docker_user_network(kernel) -> None:
    """user-networks: each node's /etc/resolv.conf names Docker's embedded DNS (127.0.0.11),
    so `ping a2` works from a1 as in a container; b1, on another network, is not found."""
    nsbox = Runner(kernel)
    assert nsbox.run("up", "user-networks", "--name", "live-dns").returncode == 0
    try:
        cp = nsbox.run("exec", "live-dns", "a1", "--", "cat", "/etc/resolv.conf")
        assert "nameserver 127.0.0.11" in cp.stdout, describe(cp)
        cp = nsbox.run("exec", "live-dns", "a1", "--", "ping", "-c1", "-W2", "a2")
        assert cp.returncode == 0 and "1 received" in cp.stdout and "172.18.0.3" in cp.stdout, describe(cp)
        cp = nsbox.run("exec", "live-dns", "a1", "--", "curl", "-s", "-m3", "http://a2/host")
        assert "NODE: a2" in cp.stdout, describe(cp)
        cp = nsbox.run("exec", "live-dns", "a1", "--", "getent", "hosts", "b1")
        assert cp.returncode == 2 and not cp.stdout, describe(cp)
    finally:
        down(nsbox, "live-dns")


def test_two_terminals_at_once(kernel) -> None:
    """tcpdump in c2 from one `exec` while another `exec` pings it from c1."""
    nsbox = Runner(kernel)
    assert nsbox.run("up", "bridge-mode", "--name", "live-two").returncode == 0
    try:
        capture = subprocess.Popen(nsbox.argv("exec", "live-two", "c2", "--", "timeout", "20", "tcpdump", "-lni",
                                              "eth0", "-c2", f"icmp and src {C1}"),
                                   cwd=kernel.REPO, env=nsbox.env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            kernel.wait_until(lambda: "tcpdump" in nsbox.run("exec", "live-two", "c2", "--", "ps", "-e").stdout, 10)
            cp = nsbox.run("exec", "live-two", "c1", "--", "ping", "-c3", "-i0.3", C2)
            assert cp.returncode == 0, describe(cp)
            out, err = capture.communicate(timeout=30)
        finally:
            if capture.poll() is None:
                capture.kill()
                capture.wait()
        assert capture.returncode == 0 and out.count(f"IP {C1} > {C2}: ICMP echo request") == 2, (out, err)
    finally:
        down(nsbox, "live-two")


def _recipes() -> list[str]:
    from nsbox import recipe

    return sorted(recipe.catalogue(()).recipes)


@pytest.mark.parametrize("name", _recipes())
def test_every_recipe_live(kernel, name: str) -> None:
    """Each shipped recipe stays up in the sandbox: every node answers with its own
    hostname, verify passes against the live lab, down ends it."""
    nsbox = Runner(kernel)
    lab = f"live-{name}"[:32]
    up = nsbox.run("up", name, "--name", lab)
    if up.returncode == 4:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, describe(up)
    try:
        nodes = status(nsbox, lab)["nodes"]
        for node in nodes:
            cp = nsbox.run("exec", lab, node, "--", "hostname")
            assert cp.stdout.strip() == node, describe(cp)
        cp = nsbox.run("verify", lab)
        assert cp.returncode == 0, describe(cp)
        assert nsbox.run("down", lab).returncode == 0
    finally:
        down(nsbox, lab)


@pytest.mark.parametrize("mode", [(), ("--on-host",)], ids=["sandbox", "on-host"])
def test_ps_works_in_run_then(kernel, mode: tuple[str, ...]) -> None:
    """`ps` works in `run --then` (a nested pid namespace without its own /proc gave
    "fatal library error, lookup self"), and in the sandbox it sees the lab's processes:
    the sandbox's pid 1 (nsbox) and the containers' servers, as `ss -p` needs."""
    cp = Runner(kernel).run("run", "bridge-mode", *mode, "--then-in", "c1", "--then", "ps -eo pid,comm")
    assert cp.returncode == 0 and "lookup self" not in cp.stderr, describe(cp)
    lines = [ln.split() for ln in cp.stdout.splitlines() if ln.split()[:1] and ln.split()[0].isdigit()]
    assert any(ln[1:] == ["ps"] for ln in lines if len(ln) == 2), describe(cp)
    if not mode:  # the sandbox's own pid namespace: nsbox is pid 1, c1's server is there
        assert any(ln[0] == "1" for ln in lines) and any(ln[1:] == ["c1"] for ln in lines), describe(cp)
