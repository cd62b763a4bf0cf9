"""kube-proxy's rules, as the kubeproxy port renders them, go into a real kernel.

Each case loads a rendered payload in a throwaway `unshare --net` namespace the way
kube-proxy does (`iptables-restore --noflush`, `nft -f`), reads it back (`iptables-save`,
`nft -j list table ip kube-proxy`), does the same with kube-proxy's own expected dump
(tests/data/kube-proxy, vendored from kubernetes/kubernetes) in a second namespace, and
compares the two readbacks: the kernel accepted every line of both and holds the same
rules. Normalisation, only what is stated: `#` lines of *-save dropped; for nft the
rule handles dropped and set/map elements compared as a set (the kernel lists a hash
set in its own order, which depends on insertion order).

The iptables payloads use `-m nfacct` (kube-proxy's metrics counters), so each namespace
first gets the two nfacct objects kube-proxy ensures (created over nfnetlink here, as
`nfacct add` would; they are per namespace). The namespaces die with their `unshare`
process: nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsbox.host.programs import program
from nsbox.kits.kubeproxy import iptables as ipt
from nsbox.kits.kubeproxy import nftables as nft
from nsbox.kits.kubeproxy.model import load_scenario
from tests.support.scratch import in_netns, strip_comments
from tests.unit.test_unit_kubeproxy import IPT, IPT_CFG, IPT_STEPS, NFT, NFT_CFG, Objects, every_feature, iptables_repeated

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a network namespace"),
              pytest.mark.tools("unshare", "nft", "iptables")]

MARK = "=====kubeproxy-next====="

# nfnetlink_acct NFNL_MSG_ACCT_NEW for each name (what `nfacct add NAME` sends).
NFACCT_SCRIPT = r'''
import socket, struct, sys
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    val = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(val), 1) + val  # NFACCT_NAME
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", 0, 0, 0) + attr  # nfgenmsg: AF_UNSPEC, NFNETLINK_V0
    # NFNL_SUBSYS_ACCT << 8 | NFNL_MSG_ACCT_NEW; NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    s.send(struct.pack("=IHHII", 16 + len(body), 7 << 8, 1 | 4 | 0x400, 1, 0) + body)
    err = struct.unpack_from("=i", s.recv(4096), 16)[0]
    if err not in (0, -17):
        sys.exit(f"nfacct {name}: errno {-err}")
'''


@pytest.fixture(scope="module", params=["nft", "legacy"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Both iptables flavours where installed (kube-proxy runs on either)."""
    from nsbox.errors import InstallError
    try:
        program(4, request.param, "restore")
    except InstallError as exc:
        pytest.skip(str(exc))
    return request.param


@pytest.fixture
def nfacct(tmp_path: Path) -> str:
    """sh that creates kube-proxy's nfacct counters in the current namespace."""
    script = tmp_path / "nfacct.py"
    script.write_text(NFACCT_SCRIPT)
    cmd = f"'{sys.executable}' '{script}' {ipt.NFACCT_INVALID} {ipt.NFACCT_LOCALHOST_NP}"
    probe = subprocess.run(["unshare", "--net", "--", "sh", "-c", cmd], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create nfacct objects (nfnetlink_acct): {probe.stderr.strip()}")
    return cmd


def _restore_and_save(flavour: str, files: list[Path], nfacct: str, family: int = 4) -> list[str]:
    """Restore each file in turn in ONE namespace (kube-proxy's --noflush); the nat and
    filter tables after each."""
    restore, save = program(family, flavour, "restore"), program(family, flavour, "save")
    steps = [f"{restore} --noflush < '{f}'; {save} -t filter; {save} -t nat; echo '{MARK}'" for f in files]
    out = in_netns(nfacct + "\n" + "\n".join(steps))
    return [strip_comments(o) for o in out.split(MARK + "\n")[:-1]]


@pytest.mark.parametrize("test", ["TestOverallIPTablesRules", "TestBadIPs"])
def test_iptables_dump_round_trips(test: str, flavour: str, nfacct: str, tmp_path: Path) -> None:
    services, slices = load_scenario(str(IPT / f"{test}.json"))
    mine = tmp_path / "mine.rules"
    mine.write_text(ipt.render(IPT_CFG, services, slices).payload)
    [got] = _restore_and_save(flavour, [mine], nfacct)
    [want] = _restore_and_save(flavour, [IPT / f"{test}.rules"], nfacct)
    assert got.count("\n-A KUBE-") >= 20
    assert got == want


def test_iptables_repeated_syncs_build_the_same_kernel_state(flavour: str, nfacct: str, tmp_path: Path) -> None:
    """The nine restores of TestSyncProxyRulesRepeated, partial ones included, applied one
    after the other: after each, the kernel holds what kube-proxy's own payloads build;
    and the partial syncs end in the state a full sync of the same objects writes."""
    mine = []
    for i, result in enumerate(iptables_repeated(), 1):
        f = tmp_path / f"step{i}.rules"
        f.write_text(result.payload)
        mine.append(f)
    got = _restore_and_save(flavour, mine, nfacct)
    want = _restore_and_save(flavour, IPT_STEPS, nfacct)
    assert len(got) == len(want) == 9
    for i, (g, w) in enumerate(zip(got, want), 1):
        assert g == w, f"step {i}"
    # state after step 8 (all partial since step 1) == one full sync of step 8's objects
    o = Objects()
    o.add_svc3(); del o.services["svc2"]; o.add_svc4(); o.svc4_endpoints(); o.svc3_endpoints("10.0.3.2", "10.0.3.3")
    full = tmp_path / "full8.rules"
    full.write_text(ipt.Proxier(IPT_CFG).sync(o.services.values(), o.slices.values()).payload)
    [fresh] = _restore_and_save(flavour, [full], nfacct)
    assert fresh == got[7]


def test_jump_rules_land_in_the_documented_order(flavour: str, nfacct: str, tmp_path: Path) -> None:
    """kube-proxy's EnsureRule(Prepend, ...) for iptablesJumpChains on empty base chains
    gives the order _jump-rules.md derives."""
    cmd = program(4, flavour, "save").replace("-save", "")
    lines = []
    for table, args in ipt.jump_rules():
        chain = next(a for a in reversed(args) if a.startswith("KUBE-"))
        quoted = " ".join("'" + a + "'" for a in args[1:])
        lines.append(f"{cmd} -t {table} -N {chain} 2>/dev/null || true; {cmd} -t {table} -I {args[0]} 1 {quoted}")
    save = program(4, flavour, "save")
    out = strip_comments(in_netns("\n".join(lines) + f"\n{save} -t filter; {save} -t nat"))
    got = [ln for ln in out.splitlines() if ln.startswith("-A ") and ln.split()[1] in
           ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")]
    doc = (IPT / "_jump-rules.md").read_text().split("```\n")[1]
    want = [ln for ln in doc.splitlines() if ln.startswith("-A ")]
    # iptables-save prints the match arguments in the kernel's order, the doc in kube-proxy's:
    # compare per chain, as the sets of words of each rule, in order.
    assert [(ln.split()[1], sorted(ln.split())) for ln in got] == [(ln.split()[1], sorted(ln.split())) for ln in want]


def _nft_state(nft_file: Path) -> dict:
    """`nft -j list table ip kube-proxy` after `nft -f FILE`, handles dropped, elements as sets."""
    out = in_netns(f"nft -f '{nft_file}'; nft -j list table ip {nft.TABLE}")
    objs = json.loads(out)["nftables"]
    state: dict[str, list] = {}
    for obj in objs:
        for kind, body in obj.items():
            if kind == "metainfo":
                continue
            body = {k: v for k, v in body.items() if k != "handle"}
            if "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
            state.setdefault(kind, []).append(json.dumps(body, sort_keys=True))
    return {k: (v if k == "rule" else sorted(v)) for k, v in state.items()}


@pytest.mark.parametrize("test", ["TestOverallNFTablesRules", "TestBadIPs"])
def test_nftables_dump_round_trips(test: str, tmp_path: Path) -> None:
    src = {"TestOverallNFTablesRules": "TestOverallIPTablesRules", "TestBadIPs": "TestBadIPs"}[test]
    services, slices = load_scenario(str(IPT / f"{src}.json"))
    mine, theirs = tmp_path / "mine.nft", tmp_path / "theirs.nft"
    mine.write_text(nft.render(NFT_CFG, services, slices).text())
    theirs.write_text(nft.loadable((NFT / f"{test}.nft").read_text()))
    got, want = _nft_state(mine), _nft_state(theirs)
    assert len(got["chain"]) >= 17 and len(got["rule"]) >= 24
    # rules: same multiset, and the same order inside each chain
    per_chain = lambda rules: {c: [r for r in rules if json.loads(r)["chain"] == c]  # noqa: E731
                               for c in {json.loads(r)["chain"] for r in rules}}
    assert per_chain(got.pop("rule")) == per_chain(want.pop("rule"))
    assert got == want


def test_a_wrong_rule_is_seen(flavour: str, nfacct: str, tmp_path: Path) -> None:
    """Negative control: the readback comparison fails on one different DNAT port."""
    services, slices = load_scenario(str(IPT / "TestBadIPs.json"))
    payload = ipt.render(IPT_CFG, services, slices).payload
    assert "--to-destination 10.180.0.1:80" in payload
    wrong = tmp_path / "wrong.rules"
    wrong.write_text(payload.replace("--to-destination 10.180.0.1:80", "--to-destination 10.180.0.1:81"))
    [got] = _restore_and_save(flavour, [wrong], nfacct)
    [want] = _restore_and_save(flavour, [IPT / "TestBadIPs.rules"], nfacct)
    diff = set(got.splitlines()) ^ set(want.splitlines())
    assert len(diff) == 2 and all("--to-destination 10.180.0.1:8" in ln for ln in diff)


def test_a_wrong_nft_element_is_seen(tmp_path: Path) -> None:
    """Negative control for the nft comparison: one NodePort element changed."""
    services, slices = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    text = nft.render(NFT_CFG, services, slices).text()
    assert "{ tcp . 3003 : goto" in text
    mine, theirs = tmp_path / "mine.nft", tmp_path / "theirs.nft"
    mine.write_text(text.replace("{ tcp . 3003 : goto", "{ tcp . 3004 : goto"))
    theirs.write_text(nft.loadable((NFT / "TestOverallNFTablesRules.nft").read_text()))
    got, want = _nft_state(mine), _nft_state(theirs)
    assert got["rule"] == want["rule"] or sorted(got["rule"]) == sorted(want["rule"])
    assert got["map"] != want["map"]


@pytest.mark.parametrize("family", [4, 6])
def test_every_feature_loads(family: int, flavour: str, nfacct: str, tmp_path: Path) -> None:
    """What no upstream dump covers (UDP, SCTP, eTP=Local with a local endpoint, iTP=Local,
    ClientIP affinity, source ranges with the node inside, terminating endpoints, no
    endpoints, --random-fully, IPv6): the kernel takes every rule, and lists back as many
    as were written, chain by chain; the nft table the same."""
    ipt_cfg, nft_cfg, services, slices = every_feature(family)
    payload = ipt.render(ipt_cfg, services, slices).payload
    f = tmp_path / "every.rules"
    f.write_text(payload)
    [back] = _restore_and_save(flavour, [f], nfacct, family)

    def per_chain(text: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for ln in text.splitlines():
            if ln.startswith("-A "):
                out[ln.split()[1]] = out.get(ln.split()[1], 0) + 1
        return out

    assert sum(per_chain(payload).values()) >= 80
    assert per_chain(back) == per_chain(payload)
    nft_file = tmp_path / "every.nft"
    text = nft.render(nft_cfg, services, slices).text()
    nft_file.write_text(text)
    fam = "ip" if family == 4 else "ip6"
    listed = json.loads(in_netns(f"nft -f '{nft_file}'; nft -j list table {fam} {nft.TABLE}"))["nftables"]
    rules = [o["rule"]["chain"] for o in listed if "rule" in o]
    want = [ln.split()[4] for ln in text.splitlines() if ln.startswith("add rule ")]
    assert sorted(rules) == sorted(want)
    elems = sum(len(o[k].get("elem", [])) for o in listed for k in ("set", "map") if k in o)
    # (a multi-port Service adds its ClusterIP to cluster-ips once per port: one element)
    assert elems == len({ln for ln in text.splitlines() if ln.startswith("add element ")})


# --- real traffic through the rendered rules ------------------------------------------------

TRAFFIC = r'''
ip link set lo up
# the pod: a netns held by a sleep (ends by itself at worst); nothing keeps our stdout open
unshare --net sleep 30 >/dev/null 2>&1 & POD=$!
SRV=
trap 'set +e; kill $POD 2>/dev/null; [ -z "$SRV" ] || kill $SRV 2>/dev/null; true' EXIT
for i in $(seq 50); do [ "$(readlink /proc/$POD/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.02; done
ip link add veth0 type veth peer name eth0 netns $POD
ip addr add 10.180.0.254/24 dev veth0
ip link set veth0 up
ip route add 172.30.0.0/16 dev veth0
nsenter --net=/proc/$POD/ns/net sh -c 'ip link set lo up; ip addr add 10.180.0.1/24 dev eth0; ip link set eth0 up; ip route add default via 10.180.0.254'
{load}
echo pod-a > {peer}.answer
nsenter --net=/proc/$POD/ns/net timeout 20 nc -n -v -N -l 80 <{peer}.answer >/dev/null 2>{peer} & SRV=$!
sleep 0.3
echo "answer=$(nc -n -w 3 172.30.0.41 80 </dev/null 2>/dev/null)"
start=$(date +%s%N)
out=$(nc -n -v -w 3 -z 172.30.0.46 80 2>&1) && echo "svc6=open" || echo "svc6=closed $out"
echo "svc6_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
'''


def _traffic(tmp_path: Path, load: str) -> tuple[dict[str, str], str]:
    peer = tmp_path / "peer"
    out = in_netns(TRAFFIC.replace("{load}", load).replace("{peer}", str(peer)), timeout=60)
    facts = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
    return facts, peer.read_text() if peer.exists() else ""


@pytest.mark.tools("nc", "nsenter")
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_real_traffic_follows_the_rendered_rules(mode: str, nfacct: str, tmp_path: Path) -> None:
    """TestOverallIPTablesRules' Services on a node namespace with one pod (10.180.0.1, the
    endpoint of ns1/svc1): a connection from the node to svc1's ClusterIP is DNATed to the
    pod, which answers and sees the node's own address (10.180.0.254 is inside the cluster
    CIDR: no masquerade); ns6/svc6 has no endpoints and is refused at once (REJECT, not a
    timeout)."""
    services, slices = load_scenario(str(IPT / "TestOverallIPTablesRules.json"))
    if mode == "iptables":
        rules = tmp_path / "rules"
        rules.write_text(ipt.render(IPT_CFG, services, slices).payload)
        from nsbox.errors import InstallError
        from nsbox.host.programs import resolve_flavour
        try:
            flavour = resolve_flavour("auto")
            restore, cmd = program(4, flavour, "restore"), program(4, flavour, "save").replace("-save", "")
        except InstallError as exc:
            pytest.skip(str(exc))
        jumps = "\n".join(f"{cmd} -t {t} -I {a[0]} 1 " + " ".join(f"'{x}'" for x in a[1:])
                          for t, a in ipt.jump_rules() if a[0] in ("OUTPUT",))
        load = f"{nfacct}\n{restore} --noflush < '{rules}'\n{jumps}"
    else:
        rules = tmp_path / "rules.nft"
        rules.write_text(nft.render(NFT_CFG, services, slices).text())
        load = f"nft -f '{rules}'"
    facts, peer = _traffic(tmp_path, load)
    assert facts["answer"] == "pod-a"
    assert "10.180.0.254" in peer
    assert facts["svc6"].startswith("closed") and "refused" in facts["svc6"]
    assert int(facts["svc6_ms"]) < 1000


@pytest.mark.tools("nc", "nsenter")
def test_without_the_rules_the_cluster_ip_does_not_answer(tmp_path: Path) -> None:
    """Negative control for the test above: the same namespaces without kube-proxy's rules."""
    facts, _ = _traffic(tmp_path, "true")
    assert facts["answer"] != "pod-a"
    assert "refused" not in facts["svc6"]
