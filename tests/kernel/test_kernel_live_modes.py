"""The done-when of issue 18 beyond bridge-mode (tests/kernel/test_kernel_live.py covers bridge-mode
in every mode with the whole tool list and a shell, and every recipe live in the sandbox
as root):

- every recipe live --on-host and as an unprivileged user (uid 65534): up, status, each
  node's own hostname through exec, verify, down; nothing left (the autouse host snapshot);
- the tool list in a Kubernetes pod (pod-to-pod's n1-p1; iptables and conntrack in its
  node), in all three modes: one sweep for the k8s family, as bridge-mode's is for Docker's.

Each tool is judged by what only this lab's node can print (its name, its address, a
neighbour pod's web server, its own packets)."""

from __future__ import annotations

import pytest

from tests.kernel.test_kernel_live import PYTHON, Runner, down, status, tree  # noqa: F401  (tree: a fixture)
from tests.support.cmd import describe as show

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(__import__("os").geteuid() != 0, reason="needs root: builds labs, and switches to uid 65534"),
    pytest.mark.tools("unshare", "nsenter", "setpriv", "ip"),
]

P1, P2, FAR = "10.244.1.2", "10.244.1.3", "10.244.2.2"  # n1-p1, n1-p2 (same node), n2-p1 (node2)


def _recipes() -> list[str]:
    from nsbox import recipe

    return sorted(recipe.catalogue(()).recipes)


def _runner(kernel, mode: str, tree_dir) -> Runner:
    return Runner(kernel, tree_dir if mode == "nobody" else None)


@pytest.mark.parametrize("name", _recipes())
@pytest.mark.parametrize("mode", ["nobody", "on-host"])
def test_every_recipe_live_in_each_mode(kernel, tree, mode: str, name: str) -> None:  # noqa: F811
    nsbox = _runner(kernel, mode, tree)
    lab = f"lm-{mode[:2]}-{name}"[:32]
    up = nsbox.run("up", name, "--name", lab, *(["--on-host"] if mode == "on-host" else []))
    if up.returncode == 4:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, show(up)
    try:
        st = status(nsbox, lab)
        assert st["state"] == "up" and st["mode"] == ("on-host" if mode == "on-host" else "sandbox"), st
        for node in st["nodes"]:
            cp = nsbox.run("exec", lab, node, "--", "hostname")
            assert cp.stdout.strip() == node, show(cp)
        cp = nsbox.run("verify", lab)
        assert cp.returncode == 0, show(cp)
        assert nsbox.run("down", lab).returncode == 0
    finally:
        down(nsbox, lab)


def _tools(tcpdump_z: list[str]) -> dict[str, tuple[str, list[str], str]]:
    """tool -> (node, command, what its output must contain)."""
    return {
        "hostname": ("n1-p1", ["hostname"], "n1-p1"),
        "hosts": ("n1-p1", ["getent", "hosts", "n1-p1"], P1),
        "ip": ("n1-p1", ["ip", "-br", "addr", "show", "eth0"], f"{P1}/24"),
        "ps": ("n1-p1", ["ps", "aux"], "node.py"),
        "ss": ("n1-p1", ["sh", "-c", "ss -Htnlp 'sport = :80'"], "users:(("),
        "iptables": ("node1", ["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"], "-N FLANNEL-POSTRTG"),
        "nft": ("node1", ["nft", "list", "ruleset"], ""),
        "conntrack": ("node1", ["sh", "-c", f"ping -c1 -W2 {P2} >/dev/null; conntrack -L -p icmp 2>&1"],
                      f"dst={P2}"),
        "ping": ("n1-p1", ["ping", "-c1", "-W2", FAR], "1 received"),
        "curl": ("n1-p1", ["curl", "-s", "-m3", f"http://{P2}/host"], "n1-p2"),
        "dig": ("n1-p1", ["sh", "-c", f"dig +time=1 +tries=1 @{P2} example.test; true"],
                f"{P2}#53: connection refused"),
        "tcpdump": ("n1-p1", ["sh", "-c", f"(sleep 1; ping -c3 -i0.3 {FAR}) >/dev/null & "
                                          f"timeout 10 tcpdump {' '.join(tcpdump_z)} -ni eth0 -c2 icmp 2>&1"],
                    "2 packets captured"),
    }


@pytest.mark.tools("tcpdump", "ss", "conntrack", "curl", "dig", "nft")
@pytest.mark.parametrize("mode", ["nobody", "sandbox", "on-host"])
def test_tools_in_a_pod(kernel, tree, mode: str) -> None:  # noqa: F811
    nsbox = _runner(kernel, mode, tree)
    lab = f"lm-tools-{mode}"
    up = nsbox.run("up", "pod-to-pod", "--name", lab, *(["--on-host"] if mode == "on-host" else []))
    assert up.returncode == 0, show(up)
    try:
        for tool, (node, cmd, expect) in _tools(["-Z", "root"] if mode == "nobody" else []).items():
            cp = nsbox.run("exec", lab, node, "--", *cmd, timeout=60)
            assert cp.returncode == 0 and expect in cp.stdout, f"{tool} in {node}:\n{show(cp)}"
    finally:
        down(nsbox, lab)
