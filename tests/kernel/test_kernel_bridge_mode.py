"""bridge-mode, built for real and checked two ways.

1. nsbox's own verdict (the JSON report).
2. Independent observers: tests/support/observers/dump_lab.sh and bridge_mode_traffic.sh,
   run by `--then` inside the live lab, ask the real tools (ip, iptables-save,
   sysctl, ping, curl, conntrack) what the kernel holds; the tests below judge
   what they wrote. The expected iptables rules are written out by hand from
   Docker 29's iptables-backend layout (tests/data/docker29/, from moby b985e2313a), not
   taken from the recipe.

Each lab is built once per module (in the sandbox and --on-host) and many small
tests read its results; the lab fixture itself checks the real host is unchanged.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.saves import tables_in_order
from tests.support.golden import docker29_rules

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, veth pairs and iptables rules"),
    pytest.mark.tools("ip", "unshare", "nsenter", "iptables-save", "sysctl", "ping", "curl", "conntrack"),
]

MODES = ["sandbox", "on-host"]
NODES = {"host", "internet", "lan", "c1", "c2"}


@dataclass
class Observed:
    """One bridge-mode run: nsbox's report and what the observers saw during it."""

    mode: str
    run: object  # tests.support.runner.NsboxRun
    dir: Path

    def text(self, name: str) -> str:
        path = self.dir / name
        hint = ""
        if "nsbox: interrupted" in self.run.stderr and self.run.returncode == 0:
            hint = (" (nsbox says 'interrupted' yet exits 0: a forked helper tore the lab down before --then;"
                    " see test_kernel_cleanup.py::test_forked_helper_does_not_tear_down_the_lab)")
        assert path.exists(), f"the observer wrote no {name}{hint}; stderr of the run:\n{self.run.stderr[-3000:]}"
        return path.read_text()

    def json(self, name: str):
        return json.loads(self.text(name))

    def rc(self, probe: str) -> int:
        return int(self.text(f"{probe}.rc").strip())

    def links(self, node: str) -> dict[str, dict]:
        return {ln["ifname"]: ln for ln in self.json(f"{node}.link.json")}

    def addrs(self, node: str) -> dict[str, dict]:
        return {ln["ifname"]: ln for ln in self.json(f"{node}.addr.json")}

    def inet(self, node: str, ifname: str) -> list[str]:
        return [f"{a['local']}/{a['prefixlen']}" for a in self.addrs(node)[ifname].get("addr_info", [])
                if a["family"] == "inet"]


def build_observed(kernel, nsbox, tmp_path_factory, mode: str, *extra: str, traffic: bool = True) -> Observed:
    obs = tmp_path_factory.mktemp(f"observed-{mode}")
    then = f"sh {kernel.OBSERVERS}/dump_lab.sh"
    if traffic:
        then += f" && sh {kernel.OBSERVERS}/bridge_mode_traffic.sh"
    args = ["run", "bridge-mode", "--format", "json", *extra, "--then", then]
    if mode == "on-host":
        args.append("--on-host")
    guard = kernel.HostGuard.now()
    run = nsbox.run(*args, env={"NSBOX_OBS_DIR": str(obs)})
    found = guard.problems()
    if found:
        guard.clean_up()
        pytest.fail("bridge-mode left the real host changed:\n" + "\n".join(found), pytrace=False)
    return Observed(mode, run, obs)


@pytest.fixture(scope="module")
def built(kernel, nsbox, tmp_path_factory):
    """Builds each lab variant once per module, on first use."""
    cache: dict[tuple, Observed] = {}

    def get(mode: str, *extra: str, traffic: bool = True) -> Observed:
        key = (mode, extra, traffic)
        if key not in cache:
            cache[key] = build_observed(kernel, nsbox, tmp_path_factory, mode, *extra, traffic=traffic)
        return cache[key]
    return get


@pytest.fixture(params=MODES)
def lab(request, built) -> Observed:
    return built(request.param)


@pytest.fixture
def onhost_lab(built) -> Observed:
    return built("on-host")


@pytest.fixture
def lab20(built) -> Observed:
    return built("sandbox", "--set", "containers=20", traffic=False)


# --------------------------------------------------------------------------- nsbox's own report

def test_run_passes(lab: Observed) -> None:
    run = lab.run
    assert run.returncode == 0, run.describe()
    assert run.json["summary"] == {"pass": 1, "fail": 0, "skip": 0}, run.describe()
    r = run.result
    assert (r["recipe"], r["status"], r["error"], r["skip_reason"]) == ("bridge-mode", "pass", None, None)


# nsbox's verdicts must agree with what the independent observers saw in the same
# live lab (tests/support/observers/*.sh); they are never the only evidence.

def test_nat_check_agrees_with_curl(lab: Observed) -> None:
    nat = [c for c in lab.run.result["checks"] if c["kind"] == "reach" and "seen from" in c["expected"]]
    assert len(nat) == 1, nat
    curl_ip, _ = _seen_source(lab)
    assert nat[0]["observed"] == f"allow, seen from {curl_ip}", (nat[0], curl_ip)


def test_conntrack_check_agrees_with_conntrack_tool(lab: Observed) -> None:
    ct = [c for c in lab.run.result["checks"] if c["kind"] == "conntrack"]
    assert len(ct) == 1, ct
    # nsbox's entry (its own probe's connection) is also in `conntrack -L`, same tuples.
    m = re.search(r"src=(\S+) dst=(\S+) sport=(\d+) dport=80 src=(\S+) dst=(\S+) sport=80 dport=(\d+)",
                  ct[0]["detail"])
    assert m, ct[0]
    tuples = " ".join(f"{k}={v}" for k, v in zip(("src", "dst", "sport"), m.groups()[:3]))
    seen = [e for e in lab.text("conntrack-host.out").splitlines() if tuples in e]
    assert seen and f"dst={m.group(5)}" in seen[0], (tuples, lab.text("conntrack-host.out"))


def test_direct_routing_is_dropped_by_the_raw_rule(lab: Observed) -> None:
    routes = json.loads(lab.text("route-internet.out"))
    assert any(r["dst"] == "172.17.0.0/16" and r.get("gateway") == "203.0.113.2" for r in routes), routes
    assert lab.rc("curl-internet-c1") == 28, lab.text("curl-internet-c1.err")  # timed out: dropped
    raw = re.search(r"^\[(\d+):\d+\] -A PREROUTING -d 172\.17\.0\.2/32 ! -i docker0 -j DROP$",
                    lab.text("raw-counters.out"), re.M)
    assert raw and int(raw.group(1)) >= 1, lab.text("raw-counters.out")
    # and nsbox's check says the same rule did it
    c = lab.run.checks()["tcp/80 internet->c2 (direct routing)"]
    assert c["observed"].startswith("deny, dropped by host raw -A PREROUTING -d 172.17.0.3/32"), c


def test_host_forwards_nothing_between_internet_and_lan(lab: Observed) -> None:
    routes = json.loads(lab.text("route-internet.out"))
    assert any(r["dst"] == "198.51.100.0/24" and r.get("gateway") == "203.0.113.2" for r in routes), routes
    assert lab.inet("host", "eth1") == ["198.51.100.1/24"] and lab.inet("lan", "eth0") == ["198.51.100.2/24"]
    # 28: curl timed out (dropped), not refused (7) nor unable to enter the netns (255)
    assert lab.rc("curl-internet-lan") == 28, lab.text("curl-internet-lan.err")
    # the curl moved FORWARD's policy counter (saved just before and after it)
    policy = [re.search(r"^:FORWARD DROP \[(\d+):\d+\]$", lab.text(f"filter-counters-{w}.out"), re.M)
              for w in ("before", "after")]
    assert all(policy) and int(policy[1].group(1)) > int(policy[0].group(1)), lab.text("filter-counters-after.out")
    # and nsbox's check says the policy did it
    c = lab.run.checks()["http internet->lan (host is no router)"]
    assert c["observed"] == "deny, dropped by host filter FORWARD policy", c


def test_namespace_names(lab: Observed) -> None:
    # what `ip netns list` showed in the live lab, and nsbox's JSON agreeing with it
    listed = {ln.split()[0] for ln in lab.text("ip-netns-list.txt").splitlines() if ln.strip()}
    ns = lab.run.result["namespaces"]
    if lab.mode == "sandbox":
        assert listed == NODES, "in the sandbox nodes keep their own names"
        assert ns == {n: n for n in NODES}
    else:
        ours = {name for name in listed if name.startswith(ns["host"][: -len("host")])}
        prefixes = {name[: -len(n)] for name in ours for n in NODES if name.endswith("-" + n)}
        assert len(ours) == len(NODES) and len(prefixes) == 1, listed
        assert re.fullmatch(r"nsb[0-9a-f]{12}-", prefix := prefixes.pop()), listed
        assert ns == {n: prefix + n for n in NODES}


def test_json_stdout_is_one_object_and_then_output_goes_to_stderr(lab: Observed) -> None:
    assert lab.run.stdout.lstrip().startswith("{")
    lab.run.json  # parses as a whole
    assert "dump_lab: done" in lab.run.stderr
    assert "bridge_mode_traffic: done" in lab.run.stderr
    assert "dump_lab: done" not in lab.run.stdout


# --------------------------------------------------------------------------- where --then ran

def test_observers_ran_in_the_live_lab(lab: Observed) -> None:
    assert (lab.dir / "dump.done").exists(), lab.run.stderr[-3000:]
    assert (lab.dir / "traffic.done").exists(), lab.run.stderr[-3000:]
    env = dict(ln.split("=", 1) for ln in lab.text("netns.env").split())
    assert env == {f"NSBOX_NETNS_{n.upper()}": v for n, v in lab.run.result["namespaces"].items()}


def test_then_runs_in_the_host_node_not_the_real_host(lab: Observed) -> None:
    assert lab.text("then.netns").strip() != os.readlink("/proc/self/ns/net"), \
        "--then ran in the real host's network namespace"
    # in both modes the host node is a machine of its own: its hostname, /etc/hosts and
    # /etc/resolv.conf live in a mount namespace of its own (nsbox/live/node.py)
    assert lab.text("then.mntns").strip() != os.readlink("/proc/self/ns/mnt"), \
        "--then ran in the real host's mount namespace, not the node's"


def test_namespaces_listed_by_ip_netns(lab: Observed) -> None:
    listed = {ln.split()[0] for ln in lab.text("ip-netns-list.txt").splitlines() if ln.strip()}
    names = set(lab.run.result["namespaces"].values())
    if lab.mode == "sandbox":
        assert listed == names, "the sandbox's /run/netns holds exactly the lab"
    else:
        assert names <= listed, "the real host's `ip netns list` must show the lab while it exists"


def test_on_host_journal_names_every_namespace(onhost_lab: Observed, kernel) -> None:
    lab = onhost_lab
    ns = lab.run.result["namespaces"]
    prefix = ns["host"][: -len("host")]
    # during --then: one journal, naming every namespace of the lab
    # (other on-host runs on this machine may have journals of their own there)
    journals = [f for f in lab.text("run-nsbox.ls").split() if f.endswith(".journal") and f.startswith(prefix)]
    assert journals == [f"{prefix}bridge-mode.journal"]
    entries = [json.loads(ln) for ln in lab.text("run-nsbox.journal").splitlines() if ln.strip()]
    listed = {ln.split()[0] for ln in lab.text("ip-netns-list.txt").splitlines() if ln.strip()}
    assert sorted(e["path"] for e in entries if e.get("kind") == "netns" and f"/{prefix}" in e["path"]) == \
        sorted(f"/run/netns/{name}" for name in listed if name.startswith(prefix))
    # after the run: none of it is left on the real host
    assert not [n for n in kernel.netns_list() if n.startswith(prefix)]
    assert not list(kernel.JOURNAL_DIR.glob(f"{prefix}*"))


# --------------------------------------------------------------------------- links, addresses, routes

def test_c1_eth0_address_and_lo_up(lab: Observed) -> None:
    a = lab.addrs("c1")
    assert set(a) == {"lo", "eth0"}, set(a)
    assert lab.inet("c1", "eth0") == ["172.17.0.2/16"]
    assert "UP" in a["eth0"]["flags"]
    assert "UP" in a["lo"]["flags"], a["lo"]["flags"]
    assert lab.inet("c1", "lo") == ["127.0.0.1/8"]


def test_c2_eth0_address(lab: Observed) -> None:
    assert lab.inet("c2", "eth0") == ["172.17.0.3/16"]


def test_c1_default_route_via_docker0(lab: Observed) -> None:
    routes = lab.json("c1.route.json")
    default = [r for r in routes if r["dst"] == "default"]
    assert len(default) == 1, routes
    assert (default[0].get("gateway"), default[0].get("dev")) == ("172.17.0.1", "eth0"), default


def test_host_docker0_is_a_bridge_with_the_gateway_address(lab: Observed) -> None:
    links = lab.links("host")
    docker0 = links["docker0"]
    assert docker0["linkinfo"]["info_kind"] == "bridge", docker0.get("linkinfo")
    assert "UP" in docker0["flags"]
    assert lab.inet("host", "docker0") == ["172.17.0.1/16"]
    assert lab.inet("host", "eth0") == ["203.0.113.2/24"]
    assert lab.inet("internet", "eth0") == ["203.0.113.1/24"]


def _docker0_ports(lab: Observed) -> dict[int, dict]:
    return {ln["ifindex"]: ln for ln in lab.links("host").values()
            if ln.get("linkinfo", {}).get("info_kind") == "veth" and ln.get("master") == "docker0"}


def _check_containers_plugged_into_docker0(lab: Observed, containers: int) -> None:
    links = lab.links("host")
    veths = {n: ln for n, ln in links.items() if ln.get("linkinfo", {}).get("info_kind") == "veth"}
    ports = _docker0_ports(lab)
    # every veth in the host but eth0 (uplink) and eth1 (to lan) is a docker0 port,
    # named like Docker's (veth + 7 hex)
    assert set(veths) - {"eth0", "eth1"} == {ln["ifname"] for ln in ports.values()}, veths.keys()
    assert len(ports) == containers
    for ln in ports.values():
        assert re.fullmatch(r"veth[0-9a-f]{7}", ln["ifname"]), ln["ifname"]
        assert "UP" in ln["flags"], ln
    # each container's eth0 is the peer of a distinct docker0 port
    peers = []
    for i in range(1, containers + 1):
        eth0 = lab.links(f"c{i}")["eth0"]
        assert eth0["linkinfo"]["info_kind"] == "veth"
        peers.append(eth0["link_index"])
    assert sorted(peers) == sorted(ports), (peers, sorted(ports))


def test_veth_host_ends_are_docker0_ports(lab: Observed) -> None:
    _check_containers_plugged_into_docker0(lab, 2)


def test_ip_forward_on_in_host(lab: Observed) -> None:
    assert lab.text("host.ip_forward").strip() == "1"


# --------------------------------------------------------------------------- iptables

@pytest.mark.parametrize("table", ["filter", "nat", "raw"])
def test_iptables_matches_docker29(lab: Observed, table: str) -> None:
    saved = tables_in_order(lab.text("host.iptables-save"))
    assert table in saved, f"no *{table} in iptables-save:\n{lab.text('host.iptables-save')}"
    assert saved[table] == docker29_rules(2)[table]


@pytest.mark.parametrize("table", ["filter", "nat"])
def test_ip6tables_skeleton_matches_docker29(lab: Observed, table: str) -> None:
    """dockerd writes the chain skeleton to ip6tables even on IPv4-only docker0."""
    saved = tables_in_order(lab.text("host.ip6tables-save"))
    assert table in saved, f"no *{table} in ip6tables-save:\n{lab.text('host.ip6tables-save')}"
    assert saved[table] == docker29_rules(2, family=6)[table]


def test_iptables_other_tables_hold_nothing(lab: Observed) -> None:
    saved = tables_in_order(lab.text("host.iptables-save"))
    for table in set(saved) - {"filter", "nat", "raw"}:
        assert all(re.fullmatch(r":[A-Z]+ ACCEPT", ln) for ln in saved[table]), (table, saved[table])


# --------------------------------------------------------------------------- traffic, seen by ping/curl/conntrack

def test_ping_c1_to_c2(lab: Observed) -> None:
    assert lab.rc("ping-c1-c2") == 0, lab.text("ping-c1-c2.out") + lab.text("ping-c1-c2.err")
    assert " 0% packet loss" in lab.text("ping-c1-c2.out")


def _seen_source(lab: Observed) -> tuple[str, int]:
    assert lab.rc("curl-c1-source") == 0, lab.text("curl-c1-source.err")
    m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+)", lab.text("curl-c1-source.out").strip())
    assert m, lab.text("curl-c1-source.out")
    return m.group(1), int(m.group(2))


def test_curl_c1_to_internet_is_masqueraded(lab: Observed) -> None:
    ip, _ = _seen_source(lab)
    assert ip == "203.0.113.2", "the server must see the host's uplink address, not the container's"


def test_curl_host_to_c1(lab: Observed) -> None:
    assert lab.rc("curl-host-c1") == 0, lab.text("curl-host-c1.err")
    assert lab.text("curl-host-c1.out").strip() == "NODE: c1, POD IP:172.17.0.2"


def test_host_conntrack_holds_the_masqueraded_connection(lab: Observed) -> None:
    _, port = _seen_source(lab)
    assert lab.rc("conntrack-host") == 0, lab.text("conntrack-host.err")
    entries = lab.text("conntrack-host.out").splitlines()
    ours = [e for e in entries
            if re.search(rf"src=172\.17\.0\.2 dst=203\.0\.113\.1 sport=\d+ dport=80 "
                         rf"src=203\.0\.113\.1 dst=203\.0\.113\.2 sport=80 dport={port}\b", e)]
    assert len(ours) == 1, f"no entry for curl's connection (server saw port {port}) in:\n" + "\n".join(entries)


def test_internet_curl_to_container_fails(lab: Observed) -> None:
    assert lab.rc("curl-internet-c1") != 0, lab.text("curl-internet-c1.out")
    assert lab.text("curl-internet-c1.out") == ""


# --------------------------------------------------------------------------- 20 containers

def test_twenty_container_namespaces(lab20: Observed) -> None:
    listed = {ln.split()[0] for ln in lab20.text("ip-netns-list.txt").splitlines() if ln.strip()}
    assert listed == {"host", "internet", "lan"} | {f"c{i}" for i in range(1, 21)}


def test_twenty_veths_on_docker0(lab20: Observed) -> None:
    _check_containers_plugged_into_docker0(lab20, 20)


def test_twenty_container_addresses(lab20: Observed) -> None:
    assert lab20.inet("c20", "eth0") == ["172.17.0.21/16"]
    got = {i: lab20.inet(f"c{i}", "eth0") for i in range(1, 21)}
    assert got == {i: [f"172.17.0.{i + 1}/16"] for i in range(1, 21)}


def test_twenty_raw_guards(lab20: Observed) -> None:
    saved = tables_in_order(lab20.text("host.iptables-save"))
    assert saved["raw"] == docker29_rules(20)["raw"]
    assert saved["filter"] == docker29_rules(20)["filter"]
