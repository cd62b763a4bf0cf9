"""kube-proxy's packet-flow tables, replayed with real packets through the rendered rules.

Upstream's per-feature tests (TestClusterIPGeneral, TestLoadBalancer, ...) run a packet
tracer over the rules kube-proxy generates; tests/data/kube-proxy/*/*.flows.json (vendored,
SOURCE.md) give their Services, EndpointSlices and flows: source, destination, port ->
the endpoints the packet may reach, DROP, REJECT or "" (no kube-proxy rule), and whether
it is masqueraded. Here each table's rules (`kubeproxy.iptables` with kube-proxy's jump
rules, or `kubeproxy.nftables`) go into a throwaway namespace N, the node (its addresses
192.168.0.2, 192.168.1.2, 192.168.99.11; forwarding on; every other destination routed
into a "sink" device, a veth whose peer is down, address 100.64.0.1). Each flow is sent for real: from N itself
when its source is one of the node's addresses, otherwise from a client namespace C
behind a veth. The kernel's own conntrack table is the observer: the reply tuple of each
connection shows where the DNAT sent it and whether it was masqueraded (reply to the
sink's 100.64.0.1 instead of the client); a connection refused at once with no conntrack
entry is a REJECT; no entry and no answer is a DROP; an entry without DNAT is "no rule".
Flows that may reach several endpoints are sent 24 times (distinct source ports); all of
them, and only them, must show up. The node listens on every TCP port of the table, so a
connection no rule touches is answered (a reset would end its conntrack entry). SCTP flows
are skipped where the kernel has no SCTP. TestHealthCheckNodePort's ACCEPT is observed on
a node whose INPUT policy is DROP (there "no rule" is a DROP). IPv6 flows run the same way
(ip6tables, the node's 2001:db8::1 and 2001:db8:1::2, sink fd00:ffff::1).
The namespaces die with their processes; nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nsbox.errors import InstallError
from nsbox.host.programs import program, resolve_flavour
from nsbox.kits.kubeproxy import iptables as ipt
from nsbox.kits.kubeproxy import nftables as nft
from nsbox.kits.kubeproxy.model import ProxierConfig, service_from_dict, slice_from_dict
from tests.kernel.test_kernel_kubeproxy import NFACCT_SCRIPT
from tests.support import paths

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces"),
              pytest.mark.tools("unshare", "nsenter", "nft", "iptables", "conntrack")]

DATA = paths.DATA / "kube-proxy"
SENDER = DATA / "flowprobe" / "send.py"
TABLES = ["TestClusterIPGeneral", "TestExternalTrafficPolicyCluster", "TestExternalTrafficPolicyLocal",
          "TestLoadBalancer", "TestNoEndpointsReject"]
NODE_IPS = ("192.168.0.2", "192.168.1.2", "192.168.99.11")  # _environment.json, eth0
NODE_IPS6 = ("2001:db8::1", "2001:db8:1::2")
NODE_SOURCES = NODE_IPS + NODE_IPS6 + ("127.0.0.1", "::1")  # probes sent from the node itself
SINK, SINK6, GW6 = "100.64.0.1", "fd00:ffff::1", "2001:db8:ffff::1"
LISTENER = ("import socket, sys, time\n"
            "socks = []\n"
            "for p in sys.argv[1:]:\n"
            "    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
            "    s.bind((\"::\", int(p))); s.listen(512); socks.append(s)\n"
            "time.sleep(60)\n")
SAMPLES = 24

HARNESS = r'''
ip link set lo up
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv6.conf.all.forwarding=1
sysctl -qw net.ipv6.conf.all.accept_dad=0
sysctl -qw net.ipv6.conf.default.accept_dad=0
sysctl -qw net.ipv4.conf.all.route_localnet=1  # as kube-proxy sets it for localhost NodePorts
# every probe of a REJECTed flow must get its ICMP error (the per-host limit allows ~6)
sysctl -qw net.ipv4.icmp_ratelimit=0
sysctl -qw net.ipv4.icmp_msgs_per_sec=100000
for k in all default lo; do sysctl -qw net.ipv4.conf.$k.rp_filter=0; done
# no dummy driver needed: veths whose peers stay down (what goes out is dropped)
ip link add eth0 type veth peer name eth0p
ip link set eth0 up
for a in {node_ips}; do ip addr add $a/24 dev eth0; done
for a in {node_ips6}; do ip addr add $a/64 dev eth0 nodad; done
ip link add sink type veth peer name sinkp
ip link set sink up
ip addr add {sink}/32 dev sink
ip addr add {sink6}/128 dev sink nodad
ip route add default dev sink
ip -6 route add default dev sink
unshare --net sleep 60 >/dev/null 2>&1 & C=$!
# the node listens on every TCP port of the table, so a connection that no kube-proxy rule
# touches is answered (its conntrack entry stays) instead of reset (which ends the entry)
timeout 60 python3 -c '{listener}' {tcp_ports} >/dev/null 2>&1 & L=$!
trap 'set +e; kill $C $L 2>/dev/null; true' EXIT
for i in $(seq 50); do [ "$(readlink /proc/$C/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.02; done
ip link add c0 type veth peer name eth0 netns $C
ip addr add 169.254.1.1/32 dev c0
ip addr add {gw6}/128 dev c0 nodad
ip link set c0 up
sysctl -qw net.ipv4.conf.c0.rp_filter=0
for a in {client_srcs}; do ip route add $a dev c0; done
nsenter --net=/proc/$C/ns/net sh -ec '
  ip link set lo up; ip link set eth0 up
  ip route add 169.254.1.1/32 dev eth0; ip route add default via 169.254.1.1 dev eth0
  ip -6 route add {gw6}/128 dev eth0; ip -6 route add default via {gw6} dev eth0
  sysctl -qw net.ipv4.ip_nonlocal_bind=1 net.ipv6.ip_nonlocal_bind=1
  for a in {client_owned}; do ip addr add $a dev eth0 nodad; done'
{load}
# (an assignment: a failing sender fails the script)
node=$(python3 '{sender}' '{node_probes}')
client=$(nsenter --net=/proc/$C/ns/net python3 '{sender}' '{client_probes}')
echo "node=$node"
echo "client=$client"
conntrack -L -f {ct_family} 2>/dev/null | sed 's/^/ct=/'
'''


def sctp_available() -> bool:
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def _ct_entries(lines: list[str]) -> list[dict]:
    """conntrack -L lines -> {proto, src, dst, sport, dport, rsrc, rdst, rsport}."""
    out = []
    for ln in lines:
        words = ln.split()
        kv = [w.split("=", 1) for w in words if "=" in w]
        srcs = [v for k, v in kv if k == "src"]
        dsts = [v for k, v in kv if k == "dst"]
        sports = [v for k, v in kv if k == "sport"]
        dports = [v for k, v in kv if k == "dport"]
        if len(srcs) < 2 or len(sports) < 2:
            continue
        out.append(dict(proto=words[0], src=srcs[0], dst=dsts[0], sport=int(sports[0]), dport=int(dports[0]),
                        rsrc=srcs[1], rdst=dsts[1], rsport=int(sports[1])))
    return out


def replay(mode: str, table: str, tmp_path: Path, **cfg_changes) -> list[tuple[dict, str, bool | None]]:
    """[(flow, observed output, observed masquerade)] for every flow of TABLE in MODE
    (CFG_CHANGES: settings that differ from the reference environment, for controls)."""
    data = json.loads((DATA / mode / f"{table}.flows.json").read_text())
    services = [service_from_dict(s) for s in data["services"]]
    slices = [slice_from_dict(s) for s in data["endpointSlices"]]
    return run_flows(mode, services, slices, data["flows"], tmp_path, **cfg_changes)


def run_flows(mode: str, services: list, slices: list, flows: list[dict], tmp_path: Path,
              input_policy_drop: bool = False, **cfg_changes) -> list[tuple[dict, str, bool | None]]:
    """Render SERVICES/SLICES in MODE, load them in a fresh node namespace, send FLOWS.
    INPUT_POLICY_DROP: the node's filter INPUT policy is DROP (iptables mode), so only what
    a rule ACCEPTs reaches it."""
    flows = [f for f in flows if f.get("proto", "tcp") != "sctp" or sctp_available()]
    tmp_path.mkdir(parents=True, exist_ok=True)
    family = 6 if any(":" in f["dst"] for f in flows) else 4

    def host(addr: str) -> str:
        return f"{addr}/128" if ":" in addr else f"{addr}/32"
    if mode == "iptables":
        try:
            flavour = resolve_flavour("auto")
            restore = program(family, flavour, "restore")
        except InstallError as exc:
            pytest.skip(str(exc))
        cmd = program(family, flavour, "save").replace("-save", "")
        rules = tmp_path / "rules"
        rules.write_text(ipt.render(ProxierConfig(**cfg_changes), services, slices).payload)
        helper = tmp_path / "nfacct.py"
        helper.write_text(NFACCT_SCRIPT)
        # kube-proxy: EnsureChain(table, dst) then EnsureRule(Prepend, ...), per jump
        jumps = "\n".join(f"{cmd} -t {t} -N {a[-1]} 2>/dev/null || true; {cmd} -t {t} -I {a[0]} 1 "
                           + " ".join(f"'{x}'" for x in a[1:]) for t, a in ipt.jump_rules())
        load = (f"python3 '{helper}' {ipt.NFACCT_INVALID} {ipt.NFACCT_LOCALHOST_NP}\n"
                f"{restore} --noflush < '{rules}'\n{jumps}")
        if input_policy_drop:
            load += f"\n{cmd} -P INPUT DROP"
    else:
        rules = tmp_path / "rules.nft"
        cfg = ProxierConfig(**{"node_port_addresses": "primary", **cfg_changes})
        rules.write_text(nft.render(cfg, services, slices).text())
        load = f"nft -f '{rules}'"

    node_probes, client_probes = [], []
    for i, f in enumerate(flows):
        count = SAMPLES if ":" in f["output"] else 3
        probe = [str(i), f.get("proto", "tcp"), f["src"], f["dst"], f["dport"], 20000 + 50 * i, count]
        (node_probes if f["src"] in NODE_SOURCES else client_probes).append(probe)
    client_srcs = sorted({p[2] for p in client_probes})
    # endpoints are routed into the sink, never back to the client (an answer would end
    # the conntrack entry): a client source that is also an endpoint (hairpin) gets no route
    endpoints = {x.strip().rsplit(":", 1)[0].strip("[]") for f in flows if ":" in f["output"]
                 for x in f["output"].split(",")}
    dsts = {f["dst"] for f in flows}
    script = HARNESS.format(
        node_ips=" ".join(NODE_IPS), node_ips6=" ".join(NODE_IPS6), sink=SINK, sink6=SINK6, gw6=GW6,
        ct_family="ipv6" if family == 6 else "ipv4",
        client_srcs=" ".join(host(a) for a in client_srcs if a not in endpoints) or "none",
        client_owned=" ".join(host(a) for a in client_srcs if a not in dsts) or "",
        listener=LISTENER, tcp_ports=" ".join(sorted({str(f["dport"]) for f in flows if f.get("proto", "tcp") == "tcp"})),
        load=load, sender=SENDER, node_probes=json.dumps(node_probes), client_probes=json.dumps(client_probes))
    script = script.replace("for a in none; do ip route add $a dev c0; done", "")
    res = subprocess.run(["unshare", "--net", "--", "sh", "-ec", script],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr.strip()}"
    lines = res.stdout.splitlines()
    errors = {**json.loads(next(ln for ln in lines if ln.startswith("node="))[5:] or "{}"),
              **json.loads(next(ln for ln in lines if ln.startswith("client="))[7:] or "{}")}
    entries = _ct_entries([ln[3:] for ln in lines if ln.startswith("ct=")])

    observed = []
    for i, f in enumerate(flows):
        mine = [e for e in entries if e["src"] == f["src"] and 20000 + 50 * i <= e["sport"] < 20050 + 50 * i]
        if mine:
            dnat = {(f"[{e['rsrc']}]" if ":" in e["rsrc"] else e["rsrc"]) + f":{e['rsport']}" for e in mine
                    if (e["rsrc"], e["rsport"]) != (f["dst"], f["dport"])}
            masq = any(e["rdst"] != f["src"] for e in mine)
            observed.append((f, ", ".join(sorted(dnat)) if dnat else "", masq))
        elif all(err == "ECONNREFUSED" for err in errors[str(i)]):
            observed.append((f, "REJECT", None))
        elif all(err == "" for err in errors[str(i)]):
            observed.append((f, "DROP", None))
        else:
            observed.append((f, "mixed: " + ",".join(sorted(set(errors[str(i)]))), None))
    return observed


def mismatches(observed: list[tuple[dict, str, bool | None]]) -> list[str]:
    bad = []
    for flow, output, masq in observed:
        want = ", ".join(sorted(x.strip() for x in flow["output"].split(","))) if ":" in flow["output"] \
            else flow["output"]
        if output != want or ("masq" in flow and masq is not None and masq != flow["masq"]):
            bad.append(f"{flow['name']}: {flow['src']} -> {flow['dst']}:{flow['dport']} "
                       f"{flow.get('proto', 'tcp')}: want {want!r} masq={flow.get('masq')}, got {output!r} masq={masq}")
    return bad


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_flow_table_replayed(mode: str, table: str, tmp_path: Path) -> None:
    observed = replay(mode, table, tmp_path)
    assert len(observed) >= 6
    bad = mismatches(observed)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_replay_sees_a_wrong_ruleset(mode: str, tmp_path: Path) -> None:
    """Control: the same table with rules rendered for masqueradeAll - pod traffic to
    the ClusterIP is then masqueraded, and the replay must say so."""
    bad = mismatches(replay(mode, "TestExternalTrafficPolicyLocal", tmp_path, masquerade_all=True))
    assert any(b.startswith("pod to cluster IP") for b in bad), bad



CASE_TABLES = ["TestInternalTrafficPolicy", "TestTerminatingEndpointsTrafficPolicyCluster",
               "TestTerminatingEndpointsTrafficPolicyLocal"]


def _case_objects(data: dict, case: dict | None) -> tuple[list, list]:
    """The Service and EndpointSlice of one case (CASE None: the slice deleted)."""
    svc = dict(data["service"])
    if "internalTrafficPolicy" in (case or {}):
        svc["internalTrafficPolicy"] = case["internalTrafficPolicy"]
    elif str(svc.get("internalTrafficPolicy", "")).startswith("<"):
        svc.pop("internalTrafficPolicy")
    if case is None:
        return [service_from_dict(svc)], []
    cols = data.get("endpoint_columns", ["ip", "nodeName"])
    endpoints = []
    for row in case["endpoints"]:
        ep = dict(zip(cols, row))
        cond = {k: ep[k] for k in ("ready", "serving", "terminating") if k in ep}
        endpoints.append({"addresses": [ep["ip"]], "nodeName": ep.get("nodeName"),
                          "conditions": cond or {"ready": True}})
    sl = dict(data["endpointSlice"], endpoints=endpoints)
    return [service_from_dict(svc)], [slice_from_dict(sl)]


@pytest.mark.parametrize("table", CASE_TABLES)
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_flow_cases_replayed(mode: str, table: str, tmp_path: Path) -> None:
    """The tables whose test changes the endpoints case by case (internalTrafficPolicy;
    ready / serving / terminating endpoints under eTP Cluster and Local), and then deletes
    the EndpointSlice: each case and the deleted state replayed in a fresh node."""
    data = json.loads((DATA / mode / f"{table}.flows.json").read_text())
    bad, sent = [], 0
    for i, case in enumerate(data["cases"]):
        services, slices = _case_objects(data, case)
        observed = run_flows(mode, services, slices, case["flows"], tmp_path / str(i))
        sent += len(observed)
        bad += [f"{case['name']}: {b}" for b in mismatches(observed)]
    services, _ = _case_objects(data, None)
    observed = run_flows(mode, services, [], data["after_each_case"]["flows"], tmp_path / "deleted")
    sent += len(observed)
    bad += [f"slice deleted: {b}" for b in mismatches(observed)]
    assert sent >= 5
    assert not bad, "\n".join(bad)



@pytest.mark.parametrize("case", range(4), ids=["base", "no-detector", "masqueradeAll", "masqueradeAll-no-detector"])
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_internal_external_masquerade_replayed(mode: str, case: int, tmp_path: Path) -> None:
    """Who is masqueraded and which endpoints are reached, from a pod, the node, localhost
    (iptables only) and outside, to ClusterIP / NodePort / LB IP of a plain, an eTP:Local
    and an iTP:Local Service, under masqueradeAll and with or without a local detector."""
    data = json.loads((DATA / mode / "TestInternalExternalMasquerade.flows.json").read_text())
    spec = data["cases"][case]
    flows = []
    for f in data["base_flows"]:
        flows.append(dict(f, **spec["overrides"].get(f["name"], {})))
    services = [service_from_dict(s) for s in data["services"]]
    slices = [slice_from_dict(s) for s in data["endpointSlices"]]
    changes = {"masquerade_all": spec["masqueradeAll"]}
    if not spec["localDetector"].startswith("ClusterCIDR"):
        changes["cluster_cidr"] = None
    observed = run_flows(mode, services, slices, flows, tmp_path, **changes)
    assert len(observed) >= 27
    bad = mismatches(observed)
    assert not bad, "\n".join(bad)



@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_node_ports_replayed(mode: str, family: int, tmp_path: Path) -> None:
    """TestNodePorts: NodePorts under --nodeport-addresses and --iptables-localhost-nodeports
    (the primary IP, a secondary IP, localhost), each case of FAMILY in a fresh node."""
    data = json.loads((DATA / mode / "TestNodePorts.flows.json").read_text())
    fam = f"ipv{family}"
    env = data[f"{fam}_environment"]
    svc = data[f"service_{fam}"]
    ep1, ep2 = (e["addresses"][0] for e in data[f"endpoints_{fam}"])
    subst = {"<podIP>": env["podIP"], "<clusterIP>": svc["clusterIP"],
             "<externalClient>": env["externalClient"], "<nodeIP>": env["nodeIP"],
             "<altNodeIP>": env["altNodeIP"], "<localhost>": env.get("localhost", "127.0.0.1" if family == 4 else "::1"),
             "<ep1>": f"[{ep1}]" if family == 6 else ep1, "<ep2>": f"[{ep2}]" if family == 6 else ep2}

    def fill(flow: dict) -> dict:
        out = {}
        for k, v in flow.items():
            if isinstance(v, str):
                for a, b in subst.items():
                    v = v.replace(a, b)
            out[k] = v
        return out

    services = [service_from_dict(svc)]
    sl = {"ns": "ns1", "service": "svc1", "addressType": f"IPv{family}", "endpoints": data[f"endpoints_{fam}"],
          "ports": [data.get("endpointPort", {"name": "p80", "port": 80, "protocol": "TCP"})]}
    slices = [slice_from_dict(sl)]
    bad, ran = [], 0
    for i, case in enumerate(c for c in data["cases"] if c["family"] == f"IPv{family}"):
        local_np = bool(case.get("localhostNodePorts", False))
        flows = [fill(f) for f in data["flows_all_cases"]]
        for f in data["flows_conditional"]:
            ok = {"family==IPv4 && localhostNodePorts": family == 4 and local_np,
                  "otherwise": not (family == 4 and local_np),
                  "allowAltNodeIP": case["allowAltNodeIP"], "!allowAltNodeIP": not case["allowAltNodeIP"]}[f["when"]]
            if ok:
                flows.append(fill({k: v for k, v in f.items() if k != "when"}))
        npa = tuple(case["nodePortAddresses"]) if case["nodePortAddresses"] else None
        changes: dict = {"node_port_addresses": npa if npa or mode == "iptables" else "primary"}
        if mode == "iptables":
            changes["localhost_node_ports"] = local_np
        if family == 6:
            changes.update(family=6, node_ip=env["nodeIP"], cluster_cidr=env.get("podCIDR", "fd00:10::/64"),
                           service_cidrs=("fd00:10:96::/112",))
        observed = run_flows(mode, services, slices, flows, tmp_path / str(i), **changes)
        ran += 1
        bad += [f"{case['name']}: {b}" for b in mismatches(observed)]
    assert ran >= 2
    assert not bad, "\n".join(bad)



def test_health_check_node_port_replayed(tmp_path: Path) -> None:
    """TestHealthCheckNodePort (iptables): the filter ACCEPT of an eTP=Local LoadBalancer's
    health-check port, and no rule once the Service is gone. On a node whose INPUT policy
    is DROP (where the ACCEPT matters) an ACCEPTed connection reaches the node (a conntrack
    entry without DNAT) and one with no rule is dropped."""
    data = json.loads((DATA / "iptables" / "TestHealthCheckNodePort.flows.json").read_text())
    services = [service_from_dict(s) for s in data["services"]]
    # the test's environment: nodePortAddresses = ["127.0.0.0/8"]
    bad = []
    for i, step in enumerate(data["steps"]):
        present = services if i == 0 else []
        flows = [dict(f, output={"ACCEPT": "", "": "DROP"}[f["output"]]) for f in step["flows"]]
        observed = run_flows("iptables", present, [], flows, tmp_path / str(i), input_policy_drop=True,
                             node_port_addresses=("127.0.0.0/8",))
        bad += [f"{step['after']}: {b}" for b in mismatches(observed)]
    assert not bad, "\n".join(bad)
