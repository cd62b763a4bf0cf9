"""The Service recipes in the kernel: service-clusterip and service-nodeport, in both
kube-proxy modes, in the sandbox and --on-host.

Each run passes all its checks, and independent observers read the live lab (`--then`):
- the node's rules equal kube-proxy's render: the same payload (nsbox.kits.kubeproxy with
  the node's settings) loaded by hand into a throwaway netns (`iptables-restore --noflush`
  and the jump rules with `iptables -I`, or `nft -f`), read back with iptables-save / `nft
  list table`, equals what node1 holds;
- conntrack -L on node2 holds the DNAT (reply from an endpoint's address and targetPort);
- curl from a pod (clusterip: the client pod to the ClusterIP; nodeport: the outside
  machine to node2's NodePort) gets an endpoint's /host page;
- the Service without endpoints is refused at once (kube-proxy's REJECT), not a timeout.
Mutants: kube-proxy's random choice taken out of every node (iptables: the `-m statistic`
matches of the KUBE-SVC chain; nftables: `numgen random mod N vmap` -> the first
endpoint's goto): every probe still answers, all from web-1, and the spread check fails.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.mutants import failed_checks, run_mutant
from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections as _sections
from tests.support.golden import parse_save

from nsbox.host.programs import program, resolve_flavour

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save", "nft", "conntrack", "curl", "unshare")]

MODES = ("iptables", "nftables")
PLACES = ("sandbox", "on-host")

DUMP = {
    "service-clusterip": ('echo "@@ ipt"; ip netns exec $NSBOX_NETNS_NODE1 {save}; '
                          'echo "@@ nft"; ip netns exec $NSBOX_NETNS_NODE1 nft list table ip kube-proxy 2>/dev/null; '
                          'echo "@@ ct"; ip netns exec $NSBOX_NETNS_NODE2 conntrack -L -p tcp 2>/dev/null; '
                          'echo "@@ curl"; ip netns exec $NSBOX_NETNS_CLIENT curl -s --max-time 5 '
                          'http://10.96.0.10/host; echo'),
    "service-nodeport": ('echo "@@ ipt"; ip netns exec $NSBOX_NETNS_NODE1 {save}; '
                         'echo "@@ nft"; ip netns exec $NSBOX_NETNS_NODE1 nft list table ip kube-proxy 2>/dev/null; '
                         'echo "@@ ct"; ip netns exec $NSBOX_NETNS_NODE2 conntrack -L -p tcp 2>/dev/null; '
                         'echo "@@ curl"; ip netns exec $NSBOX_NETNS_OUTSIDE curl -s --max-time 5 '
                         'http://192.168.70.12:30000/host; echo'),
    "service-loadbalancer": ('echo "@@ ipt"; ip netns exec $NSBOX_NETNS_NODE1 {save}; '
                             'echo "@@ nft"; ip netns exec $NSBOX_NETNS_NODE1 nft list table ip kube-proxy 2>/dev/null; '
                             'echo "@@ ct"; ip netns exec $NSBOX_NETNS_NODE1 conntrack -L -p tcp 2>/dev/null; '
                             'echo "@@ curl"; ip netns exec $NSBOX_NETNS_OUTSIDE curl -s --max-time 5 '
                             'http://192.168.70.240/host; echo; '
                             'echo "@@ neigh2"; ip netns exec $NSBOX_NETNS_NODE2 ip neigh show proxy'),
}


def _flavour() -> str:
    return resolve_flavour("auto")


def _kube_lines(save_text: str) -> dict[str, list[str]]:
    """iptables-save -> {table: the lines of kube-proxy's chains and its jumps}, quotes
    dropped (iptables versions quote comments differently)."""
    out = {}
    for table, lines in parse_save(save_text).items():
        kube = [ln.replace('"', "") for ln in lines if "KUBE-" in ln and "KUBE-PROXY-CANARY" not in ln]
        if kube:
            out[table] = kube
    return out


def _render(recipe: str, mode: str) -> tuple[object, object]:
    """kube-proxy's render for node1 of RECIPE, straight from nsbox.kits.kubeproxy."""
    from nsbox.kits.k8s import services as svcs
    from nsbox.kits.kubeproxy import iptables as ipt
    from nsbox.kits.kubeproxy import nftables as nft
    from nsbox.recipe import get

    holder: dict = {}
    import nsbox.kits.k8s.cluster as cluster_mod
    real_init = cluster_mod.Cluster.__init__

    def spy(self, *a, **kw):  # keep the cluster the recipe builds
        real_init(self, *a, **kw)
        holder["k"] = self

    cluster_mod.Cluster.__init__ = spy  # type: ignore[method-assign]
    try:
        get(recipe).build({"mode": mode})
    finally:
        cluster_mod.Cluster.__init__ = real_init  # type: ignore[method-assign]
    k = holder["k"]
    kn = k.nodes["node1"]
    cfg = svcs.proxier_config(k, kn)
    api = [s.api for s in k.services]
    slices = [svcs.endpoint_slice(k, s) for s in k.services]
    if mode == "nftables":
        return nft.render(cfg, api, slices).text(), None
    return ipt.render(cfg, api, slices).payload, ipt.jump_rules()


def _reference_iptables(payload: str, jumps, tmp_path: Path) -> str:
    """PAYLOAD and the jump rules loaded as kube-proxy loads them, in a throwaway netns."""
    fl = _flavour()
    restore, save, ipt = program(4, fl, "restore"), program(4, fl, "save"), program(4, fl, "restore")[:-8]
    (tmp_path / "payload").write_text(payload)
    script = [f"{restore} --noflush < {tmp_path / 'payload'}"]
    for table, args in jumps:
        chain, target = args[0], args[-1]
        quoted = " ".join(f"'{a}'" for a in args[1:])
        script.append(f"{ipt} -t {table} -N {target} 2>/dev/null || true")
        script.append(f"{ipt} -t {table} -I {chain} 1 {quoted}")
    script.append(save)
    r = subprocess.run(["unshare", "--net", "bash", "-ec", "\n".join(script)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _reference_nft(text: str, tmp_path: Path) -> str:
    (tmp_path / "kp.nft").write_text(text)
    r = subprocess.run(["unshare", "--net", "bash", "-ec",
                        f"nft -f {tmp_path / 'kp.nft'}; nft list table ip kube-proxy"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _nft_norm(text: str) -> list[str]:
    return [re.sub(r"counter packets \d+ bytes \d+", "counter", ln.strip()) for ln in text.splitlines()
            if ln.strip()]


def _dropped_by_its_rule(check: dict, mode: str) -> None:
    """iptables mode: kube-proxy's DROP rule is named (dropped_by) and its counter ends the
    check at once; nftables mode drops through a verdict map element, which has no counter:
    the check waits out its timeout."""
    if mode == "iptables":
        assert "the rule counted the packet" in check["detail"] and check["duration_ms"] < 1000, check
    else:
        assert check["detail"].startswith("timeout"), check


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("recipe", ["service-clusterip", "service-nodeport", "service-loadbalancer"])
def test_service_recipe(nsbox, tmp_path: Path, recipe: str, mode: str, place: str) -> None:
    dump = DUMP[recipe].format(save=program(4, _flavour(), "save"))
    r = nsbox.run("run", recipe, "--set", f"mode={mode}", *(["--on-host"] if place == "on-host" else []),
                  "--format", "json", "--then", dump, timeout=240)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert checks and all(c["passed"] for c in checks.values()), r.describe()
    d = _sections(r.stderr)

    # node1's rules are kube-proxy's render, loaded as kube-proxy loads it.
    payload, jumps = _render(recipe, mode)
    if mode == "iptables":
        assert _kube_lines(d["ipt"]) == _kube_lines(_reference_iptables(payload, jumps, tmp_path))
        assert "KUBE-SVC-" in d["ipt"] and not d["nft"].strip()
    else:
        assert _nft_norm(d["nft"]) == _nft_norm(_reference_nft(payload, tmp_path))
        assert "KUBE-" not in d["ipt"]  # no iptables rules of kube-proxy's in nftables mode

    ct = d["ct"]
    curl = d["curl"]
    if recipe == "service-clusterip":
        # the client's connection to solo (10.96.0.11) DNAT'ed to web-1's 8080
        assert re.search(r"dst=10\.96\.0\.11 sport=\d+ dport=80 .*src=10\.244\.1\.2 dst=10\.244\.2\.3 sport=8080",
                         ct), ct
        assert re.search(r"NODE: web-[123]", curl), curl
        spread = checks["spread http client->web (3 endpoints)"]
        assert spread["observed"].startswith("3 endpoints"), spread
        empty = checks["tcp client->empty:80 (no endpoints: REJECT)"]
        assert empty["detail"].startswith("refused") and empty["duration_ms"] < 1000, empty
        udp = checks["udp client->web:53 (targetPort 5353)"]
        assert udp["answered_by"] in ("web-1", "web-2", "web-3"), udp
    elif recipe == "service-loadbalancer":
        # outside -> the LB address, DNAT'ed on node1 to web-1 (node2) and masqueraded to node1
        assert re.search(r"src=192\.168\.70\.200 dst=192\.168\.70\.240 sport=\d+ dport=80 "
                         r"src=10\.244\.2\.2 dst=192\.168\.70\.11 sport=8080", ct), ct
        assert "NODE: web-1" in curl, curl
        assert not d["neigh2"].strip(), d["neigh2"]  # node2 announces nothing
        dropped = checks["tcp stranger->web-ranged (outside loadBalancerSourceRanges: dropped)"]
        _dropped_by_its_rule(dropped, mode)
    else:
        # outside -> node2:30000, DNAT'ed to web-1:8080 and masqueraded to node2
        assert re.search(r"src=192\.168\.70\.200 dst=192\.168\.70\.12 sport=\d+ dport=30000 "
                         r"src=10\.244\.1\.2 dst=192\.168\.70\.12 sport=8080", ct), ct
        assert "NODE: web-1" in curl, curl
        dropped = checks["tcp outside->node2:30001 (Local: no endpoint on node2, dropped)"]
        _dropped_by_its_rule(dropped, mode)


MUTANT = """
    import dataclasses, re


    @recipe("service-clusterip-nospread")
    def build(lab):
        '''service-clusterip without kube-proxy's random choice: always the first endpoint.'''
        _svc.build(lab, mode={mode!r})
        for node in ("node1", "node2"):
            fw = lab.nodes[node].firewall
            fw.nft[:] = [re.sub(r"numgen random mod \\d+ vmap {{ 0 : goto (\\S+) ,[^}}]*}}", r"goto \\1", t)
                         for t in fw.nft]
            for chain in fw.table("nat").chains.values():
                chain.rules[:] = [dataclasses.replace(r, matches=tuple(m for m in r.matches if m.name != "statistic"))
                                  for r in chain.rules]
"""


@pytest.mark.parametrize("mode", MODES)
def test_spread_fails_without_the_random_choice(nsbox, tmp_path: Path, mode: str) -> None:
    r = run_mutant(nsbox, tmp_path, "service-clusterip-nospread", MUTANT.format(mode=mode),
                   base="service_clusterip.py", alias="_svc", options=("--format", "json"), timeout=240)
    assert r.returncode == 1, r.describe()
    checks = r.checks()
    failed = sorted(failed_checks(r))
    assert failed == ["spread http client->web (3 endpoints)"], failed
    probes = [c for n, c in checks.items() if n.startswith("spread http client->web (3 endpoints) #")]
    assert len(probes) == 30 and {c["answered_by"] for c in probes} == {"web-1"}, probes


LB_MUTANT = """
    from nsbox.kits import k8s


    class _NoRanges(k8s.Cluster):
        def service(self, name, ports, **kw):
            kw.pop("load_balancer_source_ranges", None)
            return super().service(name, ports, **kw)

    class _Kit:
        def __getattr__(self, name):
            return _NoRanges if name == "Cluster" else getattr(k8s, name)

    _lb.k8s = _Kit()

    @recipe("service-loadbalancer-noranges")
    def build(lab):
        '''service-loadbalancer with web-ranged's loadBalancerSourceRanges left out.'''
        _lb.build(lab, mode={mode!r})
        # the rule the deny named is gone with the ranges: the check keeps only its deny
        import dataclasses
        lab.checks[:] = [dataclasses.replace(c, dropped_by=None) if getattr(c, "dropped_by", None) else c
                         for c in lab.checks]
"""


@pytest.mark.parametrize("mode", MODES)
def test_source_ranges_are_what_drops_the_stranger(nsbox, tmp_path: Path, mode: str) -> None:
    """Mutant: without loadBalancerSourceRanges the stranger is answered, so exactly its
    deny check fails (the drop was kube-proxy's firewall rule, not a missing route or ARP)."""
    r = run_mutant(nsbox, tmp_path, "service-loadbalancer-noranges", LB_MUTANT.format(mode=mode),
                   base="service_loadbalancer.py", alias="_lb", options=("--format", "json"), timeout=240)
    assert r.returncode == 1, r.describe()
    failed = sorted(failed_checks(r))
    assert failed == ["tcp stranger->web-ranged (outside loadBalancerSourceRanges: dropped)"], failed
