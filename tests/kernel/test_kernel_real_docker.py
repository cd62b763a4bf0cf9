"""nsbox beside the real Docker (issue 7, "Against the real Docker").

The real dockerd 20.10 (Debian 12's docker.io) runs in a throwaway net+mount+pid
namespace (tests/support/realdocker/): an "internet" netns routes to the Docker host over a
veth uplink, a "lan" netns sits behind its eth1, as in recipes/bridge_mode.py.

(a) nsbox's bridge-mode checks that hold for Docker 20.10 are run by nsbox's own
    verifier against the real containers' namespaces (verify/external.py) and
    against nsbox's own bridge-mode lab: the verdicts must be the same. Where the
    cause differs (direct routing), each side names the rule that dropped it.
(b) the real `iptables-save` of each scenario, normalised only where dockerd is
    random, must equal tests/data/realdocker/: the reference nsbox's `docker=20.10`
    layout is diffed against.
(c) where the real Docker cannot run, every test SKIPs with the reason (dockerd's
    own log line when it fails to start).

One dockerd (userland proxy on) serves the module; a second, short-lived one has
the proxy off. The last test stops the first and proves nothing is left: the host
snapshot of tests/support/host.py, the cgroup folders runc made, the state folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from nsbox.recipe import get
from nsbox.errors import UsageError
from nsbox.verify.external import prepare, select, verify_external
from tests.support.realdocker import labs, scenarios
from tests.support.realdocker.dockerd import RealDocker, Unavailable, cgroup_dirs, flavour_of, missing_software, \
    preload_kernel_modules, start_or_skip
from tests.support.realdocker.normalize import normalize
from tests.support.saves import tables_in_order

pytestmark = [pytest.mark.kernel]

REGEN_ENV = "NSBOX_REGEN_REALDOCKER"  # =1: write tests/data/realdocker/ instead of comparing

# nsbox's bridge-mode checks that apply to Docker 20.10 as they stand.
SAME_CHECKS = [
    "icmp c1->c2", "tcp/7 c1->c2", "udp/7 c2->c1", "icmp c1->docker0 gateway", "tcp/80 host->c1",
    "http c1->internet (NAT)", "conntrack host: http c1->internet (NAT)", "http internet->lan (host is no router)",
]
# ...and the one whose verdict holds with another cause: 20.10 writes no raw table.
DIRECT = "tcp/80 internet->c2 (direct routing)"
DIRECT_2010 = ("host", "filter", "FORWARD", "policy")


@dataclass
class Session:
    docker: RealDocker
    guard: object  # tests.support.host.HostGuard


@pytest.fixture(scope="module", autouse=True)
def _modules() -> None:
    """Before any host snapshot: the kernel module dockerd would load (see preload_kernel_modules)."""
    if os.geteuid() == 0:
        preload_kernel_modules()


@pytest.fixture(scope="module")
def real(kernel) -> Session:
    if os.geteuid() != 0:
        pytest.skip("needs root: starts dockerd")
    guard = kernel.HostGuard.now()  # before dockerd: test_nothing_left compares with it
    d = start_or_skip(userland_proxy=True)
    yield Session(d, guard)
    d.stop()  # a no-op when test_nothing_left ran


@pytest.fixture
def docker(real: Session) -> RealDocker:
    if real.docker._proc is None:
        pytest.skip("the module's dockerd was already stopped")
    yield real.docker
    real.docker.remove_all()  # each test starts from a daemon with nothing running


def _verb(observed: str) -> str:
    return observed.split(",", 1)[0]


# --------------------------------------------------------------------------- (a) verdicts

def test_bridge_mode_verdicts_match_nsbox(docker: RealDocker, nsbox) -> None:
    lab = get("bridge-mode").build()
    for name in ("c1", "c2"):
        c = docker.run(name)
        assert c.ip == lab.nodes[name].primary_ip, f"dockerd gave {name} {c.ip}, the recipe has {lab.nodes[name].primary_ip}"
    # icc=true on 20.10 too: the all-pairs matrix of the recipe (c1, c2) applies as it is.
    same = SAME_CHECKS + [m.cell_name(a, b) for m in lab.matrices for a, b, _ in m.cells]
    sub = select(lab, same + [DIRECT])
    sub.checks = [dataclasses.replace(c, dropped_by=DIRECT_2010) if c.name == DIRECT else c for c in sub.checks]
    host_rules = docker.iptables_save()
    real = {r.name: r for r in verify_external(sub, docker.netns_map(), iptables=docker.flavour,
                                               rules={"host": host_rules})}

    run = nsbox.run("run", "bridge-mode", "--format", "json")
    assert run.returncode == 0, run.describe()
    ours = run.checks()

    table = "\n".join(f"  {n:45} real: {real[n].observed:55} nsbox: {ours[n]['observed']}" for n in real)
    for name in same + [DIRECT]:
        assert real[name].passed, f"{name}: the real Docker: {real[name].observed} ({real[name].detail})\n{table}"
        assert ours[name]["passed"], f"{name}: nsbox: {ours[name]['observed']}\n{table}"
        assert _verb(real[name].observed) == _verb(ours[name]["observed"]), table
    for name in same:  # same verdict, same NAT'd source, same conntrack reply address
        assert real[name].observed == ours[name]["observed"], table
    # Direct routing: dropped on both, by different rules. nsbox (Docker 29) drops it in
    # raw PREROUTING; 20.10 has no raw rule, so the packet is forwarded towards docker0,
    # passes DOCKER-USER and DOCKER-ISOLATION-STAGE-1 (RETURN), finds no ACCEPT in the
    # DOCKER chain (c2 publishes nothing) and falls to FORWARD's DROP policy.
    assert real[DIRECT].observed == "deny, dropped by host filter FORWARD policy", table
    assert ours[DIRECT]["observed"].startswith("deny, dropped by host raw -A PREROUTING -d 172.17.0.3/32"), table
    assert "*raw" not in host_rules, "Docker 20.10 wrote a raw table"  # the cause, seen by iptables-save


def _publish_verdicts(d: RealDocker) -> None:
    lab = labs.publish_lab(d.userland_proxy)
    web = d.run("web", "-p", "8080:80")
    assert web.ip == labs.WEB
    results = verify_external(lab, d.netns_map(), iptables=d.flavour, rules={"host": d.iptables_save()})
    table = "\n".join(f"  {r.name:60} {'ok ' if r.passed else 'BAD'} {r.observed:45} {r.detail}" for r in results)
    assert all(r.passed for r in results), table


def test_publish_verdicts_with_the_userland_proxy(docker: RealDocker) -> None:
    """-p 8080:80, proxy on: from outside, from the host's loopback (docker-proxy), [::1]
    (docker-proxy on ::), and straight to the container's port from outside (20.10 lets it in)."""
    _publish_verdicts(docker)
    # Independent observer: the proxy processes this dockerd started, one per address family.
    proxies = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
               for p in docker.processes() if Path(f"/proc/{p}/exe").resolve().name == "docker-proxy"]
    assert sorted("-host-ip :: " in a for a in proxies) == [False, True], proxies


def test_external_refuses_a_netns_without_the_address_it_probes(docker: RealDocker) -> None:
    """Traffic targets only what the real system owns: a netns map that puts c2 where
    Docker numbered it differently is refused before any probe is sent."""
    lab = get("bridge-mode").build()
    docker.run("c1")
    docker.run("c2")
    paths = {**docker.netns_map(), "c2": docker.netns("c1")}  # c1's netns has 172.17.0.2, not .3
    with pytest.raises(UsageError, match=r"c2 has no address 172\.17\.0\.3"):
        prepare(select(lab, ["tcp/7 c1->c2"]), paths, docker.flavour)
    with pytest.raises(UsageError, match="no netns path for node c2"):
        prepare(select(lab, ["tcp/7 c1->c2"]), {"c1": docker.netns("c1")}, docker.flavour)


def test_bridge_mode_seen_by_independent_tools(docker: RealDocker) -> None:
    """The same facts without nsbox's probes or servers: busybox ping inside the real
    containers, and conntrack(8) in the real Docker host showing the MASQUERADE."""
    c1 = docker.run("c1")
    c2 = docker.run("c2")
    ping = docker.docker("exec", "c1", "ping", "-c", "1", "-W", "2", c2.ip, check=False)
    assert "1 packets received" in ping, ping
    ping = docker.docker("exec", "c1", "ping", "-c", "1", "-W", "2", "203.0.113.1", check=False)
    assert "1 packets received" in ping, ping
    # Egress NAT: the echo request's entry has its reply addressed to the host's uplink.
    ct = docker.in_netns("host", "conntrack", "-L", "-p", "icmp", check=False)
    entry = next((ln for ln in ct.splitlines() if f"src={c1.ip} dst=203.0.113.1 " in ln), "")
    assert "src=203.0.113.1 dst=203.0.113.2 " in entry, f"no MASQUERADE'd entry for {c1.ip} in:\n{ct}"

# --------------------------------------------------------------------------- (b) the rules

def _compare(found: dict[str, str]) -> None:
    if os.environ.get(REGEN_ENV) == "1":
        scenarios.DATA.mkdir(parents=True, exist_ok=True)
        for name, text in found.items():
            (scenarios.DATA / name).write_text(text)
        return
    for name, text in found.items():
        path = scenarios.DATA / name
        assert path.exists(), f"no reference {path}: run with {REGEN_ENV}=1"
        want = path.read_text()
        assert text == want, f"{name}: the real dockerd now writes (- reference, + now):\n" + "".join(
            difflib.unified_diff(want.splitlines(True), text.splitlines(True), "reference", "now"))


@pytest.mark.parametrize("scenario", list(scenarios.PROXY_ON))
def test_rules_equal_the_reference(docker: RealDocker, scenario: str) -> None:
    _compare(scenarios.PROXY_ON[scenario](docker))
    # dockerd 20.10 leaves IPv6 alone unless started with --ip6tables (experimental then):
    # nsbox's Docker 29 layout has an ip6tables skeleton, the 20.10 one must have none.
    assert docker.iptables_save(family=6) == "", f"{scenario}: ip6tables rules appeared"


def test_modes_share_namespaces_as_documented(docker: RealDocker) -> None:
    """host/none/container: the netns each container's init is in (inode numbers)."""
    def ino(path: str) -> int:
        return os.stat(path).st_ino

    c1 = docker.run("c1")
    cm = docker.run("cm", "--network", "container:c1")
    h1 = docker.run("h1", "--network", "host")
    n1 = docker.run("n1", "--network", "none")
    assert ino(cm.netns) == ino(c1.netns)
    assert ino(h1.netns) == ino(docker.netns("host"))
    assert ino(n1.netns) not in (ino(c1.netns), ino(docker.netns("host")))
    links = docker.in_netns("n1", "ip", "-o", "link").splitlines()
    assert [ln.split(":")[1].strip() for ln in links] == ["lo"], links


def test_mode_verdicts(docker: RealDocker) -> None:
    """nsbox's checks for container, host and none mode and a user network, on the real
    containers; the isolation deny is counted on the real DOCKER-ISOLATION-STAGE-2 rule."""
    docker.run("c1")
    docker.run("c2")
    docker.run("cm", "--network", "container:c1")
    docker.run("h1", "--network", "host")
    docker.run("n1", "--network", "none")
    docker.docker("network", "create", "--subnet", scenarios.USER_SUBNET, "mynet")
    docker.run("u1", "--network", "mynet")
    docker.run("u2", "--network", "mynet")
    results = verify_external(labs.modes_lab(), docker.netns_map(), iptables=docker.flavour,
                              rules={"host": docker.iptables_save()})
    table = "\n".join(f"  {r.name:45} {'ok ' if r.passed else 'BAD'} {r.observed:60} {r.detail}" for r in results)
    assert all(r.passed for r in results), table
    # Embedded DNS, asked with busybox nslookup inside u2: the name u1 is u1's address.
    answer = docker.docker("exec", "u2", "nslookup", "u1", "127.0.0.11", check=False)
    assert f"Address: {labs.U1}" in answer, answer
    # A netns map that breaks the sharing the lab declares is refused.
    with pytest.raises(UsageError, match="container cm: .* is not the netns of c1"):
        prepare(labs.modes_lab(), {**docker.netns_map(), "cm": docker.netns("c2")}, docker.flavour)


def test_publish_with_the_userland_proxy_off(kernel) -> None:
    """A second dockerd, --userland-proxy=false: DNAT without `! -i docker0`, OUTPUT
    without `! -d 127.0.0.0/8`, MASQUERADE of local sources, route_localnet on docker0."""
    d = start_or_skip(userland_proxy=False)
    cgroup = d.cgroup_parent
    try:
        found = scenarios.run_all(d, scenarios.PROXY_OFF)
        _publish_verdicts(d)  # [::1]:8080 refused now: no proxy, no ip6tables rules
        assert d.in_netns("host", "sysctl", "-n", "net.ipv4.conf.docker0.route_localnet").strip() == "1"
    finally:
        problems = d.stop()
    assert not problems, problems
    assert not cgroup_dirs(cgroup), cgroup_dirs(cgroup)
    _compare(found)


# nsbox's recipe (with its --set) for each real scenario dumped under tests/data/realdocker/
LAYOUT_2010 = [
    ("bridge-mode", "bridge-mode", ("containers=2",)),
    ("publish-proxy-on", "port-publish", ()),
    ("publish-proxy-off", "port-publish", ("proxy=false",)),
    ("host-mode", "host-mode", ()),
    ("none-mode", "none-mode", ()),
    ("container-mode", "container-mode", ()),
]


@pytest.mark.parametrize("scenario, recipe, sets", LAYOUT_2010, ids=[s for s, _, _ in LAYOUT_2010])
def test_nsbox_docker_2010_layout_equals_the_real_rules(nsbox, tmp_path, scenario, recipe, sets) -> None:
    """nsbox's RECIPE `--set docker=20.10`, in the kernel, dumped with the same
    iptables-save as dockerd's, equals the real dockerd's SCENARIO."""
    tool = "iptables-nft-save"
    version = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout
    if flavour_of(version) == "legacy":
        tool = "iptables-legacy-save"
    out = tmp_path / "host.rules"
    args = [a for kv in ("docker=20.10", *sets) for a in ("--set", kv)]
    run = nsbox.run("run", recipe, *args, "--timeout", "0.3", "--format", "json",
                    "--then", f"{tool} > {out} && {tool.replace('iptables', 'ip6tables')} > {out}6")
    assert run.returncode == 0, run.describe()
    assert normalize(Path(f"{out}6").read_text()) == "\n", "dockerd 20.10 writes no ip6tables rules"
    want = tables_in_order((scenarios.DATA / f"{scenario}.host.rules").read_text())
    got = tables_in_order(normalize(out.read_text()))
    assert got == want, "".join(difflib.unified_diff(
        [f"{t}: {ln}\n" for t in sorted(want) for ln in want[t]],
        [f"{t}: {ln}\n" for t in sorted(got) for ln in got[t]], "real dockerd 20.10", f"nsbox {recipe} docker=20.10"))


# --------------------------------------------------------------------------- (c) skips

def test_a_dockerd_that_cannot_start_is_a_skip_with_its_log_line(kernel) -> None:
    why = missing_software()
    if why:
        pytest.skip(why)
    d = RealDocker(storage_driver="nsbox-no-such-driver")
    with pytest.raises(Unavailable) as e:
        d.start()
    msg = str(e.value)
    assert msg.startswith("dockerd did not start: ") and "failed to start daemon" in msg, msg
    assert "\n" not in msg
    assert not cgroup_dirs(d.cgroup_parent) and not d.state.exists()


# --------------------------------------------------------------------------- nothing left

def test_nothing_left(real: Session) -> None:
    """Last: stop the module's dockerd; the host is as before it started."""
    d = real.docker
    cgroup, state = d.cgroup_parent, d.state
    d.run("last")  # a running container at the end: stop() must take it down too
    assert cgroup_dirs(cgroup), "runc made no cgroup folders: the cgroup check below would prove nothing"
    problems = d.stop()
    assert not problems, problems
    assert not cgroup_dirs(cgroup), cgroup_dirs(cgroup)
    assert not state.exists()
    found = real.guard.problems(within=5.0)
    assert not found, "\n".join(found)


USER_NETWORK_LAB = '''
from nsbox.kits import docker as kit
from nsbox.recipe import recipe


@recipe("realdocker-user-network")
def build(lab):
    """The real scenario user-network on the kit, docker=20.10: mynet 10.99.0.0/24, u1 -p 9090:80, u2."""
    d = kit.Daemon(lab, lab.host, layout="20.10")
    d.default_bridge()
    net = d.network_create("mynet", subnet="10.99.0.0/24")
    u1 = d.run("u1", net, publish=["9090:80"])
    u2 = d.run("u2", net)
    u1.serve("http", 80)
    d.embedded_dns()
    lab.expect_dns(u2, "127.0.0.11", "u1", u1.primary_ip)
'''


def test_nsbox_docker_2010_user_network_equals_the_real_rules(nsbox, tmp_path) -> None:
    """The user-network scenario: the host's rules and u2's own nat table (its embedded DNS)
    built by the kit equal the real dockerd's. The bridge is br-mynet in nsbox, br-<id> in
    Docker: both normalise to br-<net1>, as the normaliser does for the real id."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "un.py").write_text(USER_NETWORK_LAB)
    tool = "iptables-legacy-save" if flavour_of(subprocess.run(["iptables", "-V"], capture_output=True,
                                                                 text=True).stdout) == "legacy" else "iptables-nft-save"
    host, u2 = tmp_path / "host.rules", tmp_path / "u2.rules"
    run = nsbox.run("run", "realdocker-user-network", "--recipes", str(tmp_path / "r"), "--format", "json",
                    "--then", f"{tool} > {host} && ip netns exec $NSBOX_NETNS_U2 {tool} > {u2}")
    assert run.returncode == 0, run.describe()
    for got_file, real in ((host, "user-network.host.rules"), (u2, "user-network.u2.rules")):
        want = tables_in_order((scenarios.DATA / real).read_text())
        got = tables_in_order(normalize(got_file.read_text().replace("br-mynet", "br-<net1>")))
        assert got == want, "".join(difflib.unified_diff(
            [f"{t}: {ln}\n" for t in sorted(want) for ln in want[t]],
            [f"{t}: {ln}\n" for t in sorted(got) for ln in got[t]], f"real dockerd 20.10 {real}", "nsbox"))
