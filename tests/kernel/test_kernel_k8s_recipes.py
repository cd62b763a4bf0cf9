"""The network-policy and dual-stack recipes on the real kernel, judged by observers of
their own: the e2e truth table of a NetworkPolicy case printed as the e2e prints it, and
the ipsets kube-router's rules match read back with `ipset list`; for dual-stack, curl over
IPv6 from a pod to the Service's IPv6 ClusterIP, ip6tables-save showing kube-proxy's IPv6
rules, and a mutation (the IPv6 ClusterIP's rule deleted from ip6tables: the IPv6 checks
fail, the IPv4 ones still pass). Live labs end by `nsbox down`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds labs"),
              pytest.mark.tools("unshare", "nsenter", "curl", "ipset", "ip6tables-save")]

PYTHON = os.environ.get("NSBOX_TEST_PYTHON", "/opt/nsbox/venv/bin/python")


def nsbox(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([PYTHON if os.path.exists(PYTHON) else "python3", "-m", "nsbox", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True)


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(cp.args)}\nexit {cp.returncode}\n--- stdout\n{cp.stdout[-4000:]}\n--- stderr\n{cp.stderr[-3000:]}"


@pytest.mark.parametrize("where", [(), ("--on-host",)], ids=["sandbox", "on-host"])
def test_network_policy_default_case_prints_the_e2e_tables_and_passes(where):
    cp = nsbox("run", "network-policy", *where, "--then-in", "node", "--then", "ipset list -n | sort")
    assert cp.returncode == 0, show(cp)
    out = cp.stdout
    assert "allow-from-podselector-same-ns step 1 80/TCP: correct 72, incorrect 0, result=pass" in out, show(cp)
    assert "expected:" in out and "observed:" in out and "comparison:" in out
    # the e2e's row for x/c: only x/a is blocked (x/a admits only pod=b of its namespace)
    assert any(line.split()[:3] == ["x-c", "X", "."] for line in out.splitlines()), out
    sets = [s for s in (cp.stdout + cp.stderr).splitlines() if s.startswith("KUBE-")]  # --then's output
    assert any(s.startswith("KUBE-SRC-") for s in sets) and any(s.startswith("KUBE-DST-") for s in sets), show(cp)


def test_network_policy_an_ipblock_except_case_and_bad_input():
    cp = nsbox("run", "network-policy", "--set", "case=egress-cidr-except", "--format", "json")
    assert cp.returncode == 0, show(cp)
    res = json.loads(cp.stdout)["results"][0]
    assert res["status"] == "pass" and len(res["checks"]) == 72
    # an SCTP-only step is sent over SCTP: it SKIPs (exit 4) with the reason where the kernel
    # lacks sctp, and runs where it has it
    cp = nsbox("run", "network-policy", "--set", "case=sctp-ports", "--format", "json")
    res = json.loads(cp.stdout)["results"][0]
    if res["status"] == "skip":
        assert cp.returncode == 4 and "sctp" in res["skip_reason"], show(cp)
    else:
        assert cp.returncode == 0 and {c["proto"] for c in res["checks"]} == {"sctp"}, show(cp)
    cp = nsbox("run", "network-policy", "--set", "case=nope")
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1, show(cp)
    cp = nsbox("run", "network-policy", "--set", "step=9")
    assert cp.returncode == 2 and "steps 1-1" in cp.stderr, show(cp)


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_dual_stack_ipv6_clusterip_by_curl_and_without_its_rule(mode):
    lab = f"kds-{mode[:3]}"
    up = nsbox("up", "dual-stack", "--name", lab, "--set", f"mode={mode}")
    if up.returncode == 4:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, show(up)
    try:
        st = json.loads(nsbox("verify", lab, "--format", "json").stdout)["results"][0]
        v6 = next(c for c in st["checks"] if c["name"].endswith("(IPv6 ClusterIP)"))
        ip6 = v6["name"].split("[")[1].split("]")[0]
        assert ip6.startswith("fd00:10:96::"), v6
        cp = nsbox("exec", lab, "client", "--", "curl", "-s", "-m3", "-g", f"http://[{ip6}]/source")
        assert cp.returncode == 0 and "fd00:10:244:2::" in cp.stdout, show(cp)  # the client's own IPv6
        cp = nsbox("exec", lab, "client", "--", "curl", "-s", "-m3", "http://10.96.0.11/host")
        assert cp.returncode == 0 and cp.stdout.startswith("NODE: web-"), show(cp)
        if mode == "iptables":
            save = nsbox("exec", lab, "node2", "--", "ip6tables-save", "-t", "nat").stdout
            rule = next(line for line in save.splitlines()
                        if line.startswith("-A KUBE-SERVICES") and f"-d {ip6}/128" in line)
            cut = ["sh", "-c", f"ip6tables-save -t nat | grep -F -- '{rule}' | sed 's/^-A/-D/' "
                               "| xargs -L1 ip6tables -t nat"]
        else:
            ruleset = nsbox("exec", lab, "node2", "--", "nft", "list", "table", "ip6", "kube-proxy").stdout
            assert f"{ip6} . tcp . 80" in ruleset, ruleset
            cut = ["nft", "delete", "element", "ip6", "kube-proxy", "service-ips", f"{{ {ip6} . tcp . 80 }}"]
        cp = nsbox("exec", lab, "node2", "--", *cut)
        assert cp.returncode == 0, show(cp)
        cp = nsbox("exec", lab, "client", "--", "curl", "-s", "-m2", "-g", f"http://[{ip6}]/host")
        assert not cp.stdout.startswith("NODE: web-"), show(cp)
        cp = nsbox("verify", lab, "--format", "json")
        assert cp.returncode == 1, show(cp)
        checks = {c["name"]: c["passed"] for c in json.loads(cp.stdout)["results"][0]["checks"]}
        assert not checks[v6["name"]] and checks["http client->web-1 IPv6 (across nodes)"]
        assert all(ok for name, ok in checks.items() if "(IPv4 ClusterIP)" in name)
    finally:
        nsbox("down", lab)


MANIFESTS = REPO / "recipes" / "manifests"


@pytest.mark.parametrize("where", [(), ("--on-host", "--set", "mode=nftables", "--set", "cni=vxlan")],
                         ids=["sandbox", "on-host-nftables-vxlan"])
def test_manifest_examples_pass(where):
    for name in ("web-app.yaml", "guestbook-policy.yaml"):
        cp = nsbox("run", str(MANIFESTS / name), *where, "--format", "json")
        assert cp.returncode == 0, show(cp)
        res = json.loads(cp.stdout)["results"][0]
        assert res["status"] == "pass" and len(res["checks"]) >= 10, res
    assert "ConfigMap web-config: not modelled by nsbox" in nsbox("run", str(MANIFESTS / "web-app.yaml")).stderr


def test_manifest_policy_deny_fails_without_kube_routers_reject():
    """The guestbook's denials are kube-router's REJECT: deleted from the backend pod's chain
    on its node, the store pod reaches the backend, and verify fails that cell."""
    lab = "kman-gb"
    up = nsbox("up", str(MANIFESTS / "guestbook-policy.yaml"), "--name", lab)
    assert up.returncode == 0, show(up)
    try:
        cp = nsbox("exec", lab, "store.data", "--", "curl", "-s", "-m2", "-o", "/dev/null", "-w", "%{http_code}",
                   "http://backend.default:80/")
        assert cp.stdout != "200", show(cp)  # denied by policy (the name resolves through the cluster DNS)
        cut = ("iptables-save -t filter | grep -- '-A KUBE-POD-FW-.*default/backend reject' | sed 's/^-A/-D/' "
               "| xargs -L1 iptables -t filter")
        cp = nsbox("exec", lab, "node1", "--", "sh", "-c", cut)
        assert cp.returncode == 0, show(cp)
        cp = nsbox("exec", lab, "store.data", "--", "curl", "-s", "-m2", "-o", "/dev/null", "-w", "%{http_code}",
                   "http://backend.default:80/")
        assert cp.stdout == "200", show(cp)
        cp = nsbox("verify", lab, "--format", "json")
        assert cp.returncode == 1, show(cp)
        checks = {c["name"]: c["passed"] for c in json.loads(cp.stdout)["results"][0]["checks"]}
        assert not checks["policy 8080/TCP: store.data->backend"]
        assert checks["policy 6379/TCP: backend->store.data"]
    finally:
        nsbox("down", lab)


NO_AFFINITY = """
from nsbox.kits import k8s
from nsbox.recipe import recipe


@recipe("sticky-without-affinity")
def build(lab):
    '''service-clusterip's sessionAffinity check on a Service without sessionAffinity.'''
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode={mode!r})
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    for name, node in (("web-1", n1), ("web-2", n1), ("web-3", n2)):
        k.pod(node, name, labels={{"app": "web"}}).serve("http", 8080)
    client = k.pod(n2, "client")
    plain = k.service("plain", k8s.Port(80, 8080, name="http"), selector={{"app": "web"}}, session_affinity={aff!r})
    lab.expect_spread(client, plain, 80, probes=10, at_least=1, at_most=1, answered_by=["web-1", "web-2", "web-3"],
                      name="one endpoint for all 10")
"""


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_the_session_affinity_check_fails_without_affinity(tmp_path, mode):
    """The same 10 connections to a Service without sessionAffinity reach several endpoints
    (all ten on one of three by chance: 3 x (1/3)^10, about 1 in 20,000), so the check fails;
    with ClientIP it passes."""
    for aff, want in (("None", 1), ("ClientIP", 0)):
        (tmp_path / "mutant.py").write_text(NO_AFFINITY.format(mode=mode, aff=aff))
        cp = nsbox("run", "sticky-without-affinity", "--recipes", str(tmp_path), "--format", "json")
        assert cp.returncode == want, show(cp)
        checks = {c["name"]: c for c in json.loads(cp.stdout)["results"][0]["checks"]}
        assert checks["one endpoint for all 10"]["passed"] == (aff == "ClientIP"), checks["one endpoint for all 10"]
