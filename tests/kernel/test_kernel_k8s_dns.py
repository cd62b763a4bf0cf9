"""Cluster DNS on the real kernel, observed from inside a pod by the resolver tools a user
runs there (glibc's getent, curl, dig), not by nsbox's probes: a live service-dns lab
(`nsbox up`), each command run in the client pod's namespaces (`nsbox exec`, which sees the
pod's own /etc/resolv.conf in its mount namespace). The name `web` resolves through the
search list kubelet writes to web's ClusterIP, curl reaches an endpoint by that name,
dig gets the SRV/PTR/headless answers from 10.96.0.10 (kube-proxy's DNAT to the coredns
pod on the other node). Mutation: delete the kube-dns Service's DNAT from kube-proxy's
rules on the client's node (iptables: its KUBE-SERVICES jump; nftables: its service-ips
element) and the name no longer resolves, and `nsbox verify` fails the DNS checks.

Everything started here ends by `nsbox down` (the holder's pid).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds labs"),
              pytest.mark.tools("unshare", "nsenter", "getent", "curl", "dig")]

PYTHON = os.environ.get("NSBOX_TEST_PYTHON", "/opt/nsbox/venv/bin/python")
WEB_IP = "10.96.0.11"  # web's ClusterIP: the first after kube-dns's 10.96.0.10


def nsbox(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([PYTHON if os.path.exists(PYTHON) else "python3", "-m", "nsbox", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True)


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(cp.args)}\nexit {cp.returncode}\n--- stdout\n{cp.stdout[-3000:]}\n--- stderr\n{cp.stderr[-3000:]}"


def in_pod(lab: str, pod: str, cmd: str) -> subprocess.CompletedProcess:
    return nsbox("exec", lab, pod, "--", "sh", "-c", cmd, timeout=60)


# (mode, the command that deletes kube-dns's DNAT on node2, kube-proxy's own rule or element)
MUTATIONS = {
    "iptables": "iptables-save -t nat | grep -- '-A KUBE-SERVICES -d 10.96.0.10/32' | sed 's/^-A/-D/' "
                "| xargs -L1 iptables -t nat",
    "nftables": "nft delete element ip kube-proxy service-ips '{ 10.96.0.10 . udp . 53 }'",
}


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_names_resolve_inside_a_pod_and_not_without_the_dnat(mode):
    lab = f"kdns-{mode[:3]}"
    up = nsbox("up", "service-dns", "--name", lab, "--set", f"mode={mode}")
    if up.returncode == 4:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, show(up)
    try:
        cp = in_pod(lab, "client", "cat /etc/resolv.conf")
        lines = [x for x in cp.stdout.splitlines() if not x.startswith("#")]
        assert lines == ["search default.svc.cluster.local svc.cluster.local cluster.local",
                         "nameserver 10.96.0.10", "options ndots:5"], show(cp)
        cp = in_pod(lab, "client", "getent hosts web")
        assert cp.returncode == 0 and cp.stdout.split() == [WEB_IP, "web.default.svc.cluster.local"], show(cp)
        cp = in_pod(lab, "client", "curl -s -m3 http://web/host")
        assert cp.returncode == 0 and cp.stdout.startswith("NODE: web-"), show(cp)
        cp = in_pod(lab, "client", "dig +short +time=2 +tries=1 web.default.svc.cluster.local")
        assert cp.stdout.split() == [WEB_IP], show(cp)
        cp = in_pod(lab, "client", "dig +short +time=2 +tries=1 SRV _http._tcp.web.default.svc.cluster.local")
        assert cp.stdout.split() == ["0", "100", "80", "web.default.svc.cluster.local."], show(cp)
        cp = in_pod(lab, "client", f"dig +short +time=2 +tries=1 -x {WEB_IP}")
        assert cp.stdout.split() == ["web.default.svc.cluster.local."], show(cp)
        db0 = in_pod(lab, "db-0", "ip -4 -o addr show eth0").stdout.split()[3].split("/")[0]
        cp = in_pod(lab, "client", "getent hosts db-0.db")
        assert cp.stdout.split() == [db0, "db-0.db.default.svc.cluster.local"], show(cp)
        cp = in_pod(lab, "client", "dig +short +time=2 +tries=1 db.default.svc.cluster.local")
        assert len(cp.stdout.split()) == 2 and db0 in cp.stdout.split(), show(cp)
        cp = in_pod(lab, "client", "dig +time=2 +tries=1 nothere.default.svc.cluster.local | grep -o 'status: [A-Z]*'")
        assert cp.stdout.strip() == "status: NXDOMAIN", show(cp)
        cp = nsbox("verify", lab, "--format", "json")
        assert cp.returncode == 0, show(cp)

        # Mutation: without kube-dns's DNAT on the client's node, nothing answers 10.96.0.10.
        cut = in_pod(lab, "node2", MUTATIONS[mode])
        assert cut.returncode == 0, show(cut)
        # RES_OPTIONS (resolv.conf(5)) shortens glibc's wait per query from 5 s x 2 tries to 1 s:
        # kube-proxy's iptables rules leave an unserved ClusterIP unanswered (no REJECT, unlike
        # its nftables ones), so getent waits out every search-list name (40 s at the defaults).
        cp = in_pod(lab, "client", "RES_OPTIONS='timeout:1 attempts:1' getent hosts web")
        assert cp.returncode == 2 and not cp.stdout, show(cp)
        cp = in_pod(lab, "client", "dig +short +time=1 +tries=1 web.default.svc.cluster.local")
        assert WEB_IP not in cp.stdout, show(cp)
        cp = nsbox("verify", lab, "--format", "json")
        assert cp.returncode == 1, show(cp)
        checks = {c["name"]: c for c in json.loads(cp.stdout)["results"][0]["checks"]}
        assert not checks["dns client: web A (ClusterIP)"]["passed"], checks["dns client: web A (ClusterIP)"]
        assert checks["http client->web (the address DNS answered)"]["passed"]  # only DNS was cut
    finally:
        nsbox("down", lab)
