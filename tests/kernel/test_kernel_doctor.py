"""`nsbox doctor` against independent observations: each link kind it calls present or
missing is tried with `ip link add` in a throwaway `unshare --net` namespace, br_netfilter is /proc/sys/net/bridge, a tool is `command -v`; a broken
install is exit 2 and named BROKEN, never a missing kernel feature."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.tools("ip", "unshare")]

# feature -> `ip` commands that need it, run in the throwaway netns
IP_LINK = {
    "veth": "ip link add t0 type veth peer name t1",
    "bridge": "ip link add t0 type bridge",
    "macvlan": "ip link add p0 type bridge && ip link add t0 link p0 type macvlan mode bridge",
    "ipvlan": "ip link add p0 type bridge && ip link add t0 link p0 type ipvlan mode l2",
    "vlan": "ip link add p0 type bridge && ip link add t0 link p0 type vlan id 50",
    "dummy": "ip link add t0 type dummy",
    "vxlan": "ip link add t0 type vxlan id 42 dstport 4789",
    "geneve": "ip link add t0 type geneve id 42 remote 192.0.2.1",
    "wireguard": "ip link add t0 type wireguard",
}


def what_ip_says() -> dict[str, bool]:
    """Feature -> whether `ip link add` works, each in a throwaway unnamed netns (`unshare
    --net`): nothing is pinned under /run/netns, so nothing is left there (`ip netns add`
    would make /run/netns a mount point that iproute2 never takes away)."""
    return {f: _ip_link(f) for f in IP_LINK}


def _ip_link(feature: str) -> bool:
    return subprocess.run(["unshare", "--net", "sh", "-c", IP_LINK[feature]], capture_output=True).returncode == 0


def test_doctor_agrees_with_ip_and_proc(nsbox, host_unchanged) -> None:
    run = nsbox.run("doctor", "--format", "json")
    assert run.returncode == 0, run.describe()
    report = run.json
    assert report["nsbox"]["usable"] is True
    features = {f["name"]: f for f in report["features"]}
    for feature, has in what_ip_says().items():
        assert features[feature]["state"] == ("present" if has else "missing"), (feature, features[feature])
        if not has:
            assert f"lacks {feature}" in features[feature]["detail"]
    assert features["br_netfilter"]["state"] == ("present" if os.path.isdir("/proc/sys/net/bridge") else "missing")
    assert features["conntrack"]["state"] == (
        "present" if os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max") else "missing")
    for tool in report["tools"]:
        found = subprocess.run(["sh", "-c", f"command -v {tool['name']}"], capture_output=True).returncode == 0
        assert (tool["state"] == "present") == found, tool
    recipes = {r["name"]: r for r in report["recipes"]}
    bridge = recipes["bridge-mode"]
    assert bridge["can_run"] is (all(features[f]["state"] == "present" for f in bridge["requires"])), bridge
    host_unchanged.assert_clean()


def test_unprivileged_doctor_gives_the_same_answers(nsbox, host_unchanged) -> None:
    """Without root doctor probes in a user namespace of its own: the same answers, no sudo."""
    as_root = {f["name"]: f["state"] for f in nsbox.run("doctor", "--format", "json").json["features"]}
    cp = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                         sys.executable, "-m", "nsbox", "doctor", "--format", "json"],
                        cwd="/", env={**nsbox.env(), "HOME": "/"}, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    report = json.loads(cp.stdout)
    assert report["nsbox"]["root"] is False
    as_user = {f["name"]: f["state"] for f in report["features"]}
    if as_user["user namespaces"] != "present":
        pytest.skip(f"no unprivileged user namespaces here: {report['nsbox']['sandbox']}")
    assert as_user == as_root
    host_unchanged.assert_clean()


def test_libxtables_that_does_not_load_is_broken_not_missing(nsbox, host_unchanged) -> None:
    """PYTHON_IPTABLES_XTABLES_VERSION makes python-iptables look for libxtables.so.999 only."""
    run = nsbox.run("doctor", "--format", "json", env={"PYTHON_IPTABLES_XTABLES_VERSION": "999"})
    assert run.returncode == 2, run.describe()
    report = run.json
    assert report["nsbox"]["usable"] is False
    packages = {p["name"]: p for p in report["python_packages"]}
    assert packages["python-iptables"]["state"] == "broken"
    assert "libxtables" in packages["python-iptables"]["detail"]
    assert "apt install iptables" in packages["python-iptables"]["fix"]
    # NAT is probed in the rules' backend, without python-iptables: the kernel still has it.
    nat = {f["name"]: f for f in report["features"]}["nat"]
    assert nat["state"] == "present", nat
    assert {r["name"]: r for r in report["recipes"]}["bridge-mode"]["can_run"]  # nothing it runs loads iptc
    text = nsbox.run("doctor", env={"PYTHON_IPTABLES_XTABLES_VERSION": "999"})
    assert text.returncode == 2 and "BROKEN python-iptables" in text.stdout
    assert "installation is broken: python-iptables" in text.stdout
    host_unchanged.assert_clean()
