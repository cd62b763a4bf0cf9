"""`run --artifacts DIR` on the real kernel: a lab broken on purpose (a DROP rule
in the host's FORWARD chain, or c1's route to c2 left out) fails, and the files
it leaves name the cause. Every assertion reads the files with a parser that is
not nsbox's: json for `ip -j`, the iptables-save text, and `tcpdump -r` (plus the
pcap magic number) for the captures."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.paths import recipe_dir

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
              pytest.mark.tools("ip", "unshare", "nsenter", "iptables-save", "conntrack", "tcpdump")]

RECIPE = """
    from nsbox.recipe import Param, recipe

    @recipe("artifacts-demo", params=[Param("drop", False, "the host drops tcp/7 to c2"),
                                      Param("route", True, "c1 has its route to c2's subnet")])
    def build(lab, drop, route):
        '''c1 reaches c2 through the host, one subnet each side.'''
        lab.require("veth")
        c1, c2 = lab.node("c1"), lab.node("c2")
        lab.veth(c1, "eth0", lab.host, "v1")
        lab.veth(c2, "eth0", lab.host, "v2")
        c1.address("eth0", "10.77.1.2/24")
        c2.address("eth0", "10.77.2.2/24")
        lab.host.address("v1", "10.77.1.1/24").address("v2", "10.77.2.1/24")
        lab.host.sysctl("net.ipv4.ip_forward", 1)
        if route:
            c1.route("10.77.2.0/24", via="10.77.1.1")
        c2.route("10.77.1.0/24", via="10.77.2.1")
        c2.serve("tcp", 7)
        if drop:
            lab.host.iptables("filter").append("FORWARD", "-d 10.77.2.2/32 -p tcp -m tcp --dport 7 -j DROP")
        lab.expect("c1", "c2", "tcp", 7)
        lab.expect("c1", "c2", "icmp")
"""
CHECK = "tcp/7 c1->c2"
PCAP_MAGICS = {bytes.fromhex("d4c3b2a1"), bytes.fromhex("a1b2c3d4"), bytes.fromhex("4d3cb2a1"),
               bytes.fromhex("a1b23c4d")}


@pytest.fixture
def recipes(tmp_path):
    return recipe_dir(tmp_path, "demo.py", RECIPE)


def run_broken(nsbox, recipes, out: Path, *extra: str):
    run = nsbox.run("run", "artifacts-demo", "--recipes", recipes, "--artifacts", str(out), "--format", "json",
                    "--timeout", "0.5", "--settle", "0.5", *extra)
    assert run.returncode == 1, run.describe()
    return run


def files_of(run, check: str) -> dict[str, Path]:
    """The failing check's artifacts as {"NODE/FILE": path}, each one checked to exist."""
    c = run.checks()[check]
    assert not c["passed"]
    root = Path(run.result["artifacts_dir"])
    out = {}
    for f in c["artifacts"]:
        p = Path(f)
        assert p.is_file(), f"the JSON names {f}, which does not exist"
        out[str(p.relative_to(root))] = p
    return out


def tcpdump_read(path: Path) -> list[str]:
    """The capture as tcpdump prints it (an independent pcap parser); also checks the magic number."""
    assert path.read_bytes()[:4] in PCAP_MAGICS, f"{path} is not a pcap file"
    cp = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, timeout=10)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.splitlines()


def syns_to_port_7(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "> 10.77.2.2.7:" in ln and "Flags [S]" in ln]


def test_drop_rule_is_named_by_the_rules_dump_and_the_capture(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    run = run_broken(nsbox, recipes, out, "--set", "drop=true")
    assert run.result["artifacts_dir"] == str(out / "artifacts-demo")
    files = files_of(run, CHECK)
    assert {"c1/route.json", "c2/addr.json", "host/iptables.txt", "host/conntrack.txt",
            "c1/capture-tcp-7_c1-c2.pcap", "c2/capture-tcp-7_c1-c2.pcap"} <= set(files)
    # The cause, as iptables-save -c printed it in the host node: the DROP rule, which counted packets.
    rules = files["host/iptables.txt"].read_text().splitlines()
    drops = [ln for ln in rules if ln.endswith("-A FORWARD -d 10.77.2.2/32 -p tcp -m tcp --dport 7 -j DROP")]
    assert len(drops) == 1, rules
    packets = int(drops[0][1:].split(":", 1)[0])
    assert packets >= 1, drops[0]
    # The capture: the SYN left c1 and never arrived at c2.
    assert syns_to_port_7(tcpdump_read(files["c1/capture-tcp-7_c1-c2.pcap"]))
    assert not syns_to_port_7(tcpdump_read(files["c2/capture-tcp-7_c1-c2.pcap"]))
    # The check that passed has no artifacts; the README points a person at the failed one's files.
    assert run.checks()["icmp c1->c2"]["artifacts"] == []
    readme = (out / "artifacts-demo" / "README.txt").read_text()
    assert f"FAIL  {CHECK}" in readme and "host/iptables.txt" in readme
    assert "icmp c1->c2" not in readme


def test_missing_route_is_named_by_the_routes_dump(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    run = run_broken(nsbox, recipes, out, "--set", "route=false")
    files = files_of(run, CHECK)
    routes = json.loads(files["c1/route.json"].read_text())
    main = [r for r in routes if r.get("table", "main") == "main" and ":" not in r["dst"]]
    assert [r["dst"] for r in main] == ["10.77.1.0/24"], main  # only the connected subnet: no way to c2
    host_routes = {r["dst"] for r in json.loads(files["host/route.json"].read_text())}
    assert "10.77.2.0/24" in host_routes  # the dump is not simply empty: the host knows both subnets
    # Nothing of the probe could leave c1 ("network unreachable" before any packet): a valid
    # capture with no IPv4 packet in it (the kernel's own IPv6 link-local DAD solicitations
    # may be there: the capture keeps every ICMPv6 packet).
    lines = tcpdump_read(files["c1/capture-tcp-7_c1-c2.pcap"])
    assert [ln for ln in lines if " IP " in ln or " ARP" in ln] == [], lines
    assert all("ICMP6" in ln for ln in lines), lines
    summary = json.loads((out / "artifacts-demo" / "summary.json").read_text())
    assert {c["name"] for c in summary["checks"]} == {CHECK, "icmp c1->c2"}


def test_on_host_the_capture_is_made_by_tcpdump(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    run = run_broken(nsbox, recipes, out, "--set", "drop=true", "--on-host")
    files = files_of(run, CHECK)
    summary = json.loads((out / "artifacts-demo" / "summary.json").read_text())
    (entry,) = [c for c in summary["checks"] if c["name"] == CHECK]
    assert {f["by"] for f in entry["capture"]["files"]} == {"tcpdump"}
    lines = tcpdump_read(files["c1/capture-tcp-7_c1-c2.pcap"])
    assert syns_to_port_7(lines), lines
    assert summary["nodes"]["c1"] == run.result["namespaces"]["c1"]  # the on-host name, nsbXXXX-c1


def test_a_second_failing_run_gets_its_own_folder(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    first = run_broken(nsbox, recipes, out, "--set", "route=false")
    second = run_broken(nsbox, recipes, out, "--set", "route=false")
    assert first.result["artifacts_dir"] == str(out / "artifacts-demo")
    assert second.result["artifacts_dir"] == str(out / "artifacts-demo.2")


def test_a_passing_run_writes_nothing(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    run = nsbox.run("run", "artifacts-demo", "--recipes", recipes, "--artifacts", str(out), "--format", "json",
                    "--timeout", "0.5")
    assert run.returncode == 0, run.describe()
    assert run.result["artifacts_dir"] is None
    assert not out.exists()


def test_text_report_points_at_the_readme(nsbox, recipes, tmp_path):
    out = tmp_path / "art"
    run = nsbox.run("run", "artifacts-demo", "--recipes", recipes, "--artifacts", str(out), "--timeout", "0.5",
                    "--settle", "0.5", "--set", "route=false")
    assert run.returncode == 1, run.describe()
    assert f"artifacts: {out / 'artifacts-demo'}/README.txt" in run.stdout


# ------------------------------------------------------------- a failing DNS check (issue 13)

DNS_RECIPE = """
    from nsbox.recipe import Param, recipe

    @recipe("artifacts-dns", params=[Param("drop", True, "the host drops udp/53 to c2")])
    def build(lab, drop):
        '''c1 asks c2's DNS server through the host.'''
        lab.require("veth")
        c1, c2 = lab.node("c1"), lab.node("c2")
        lab.veth(c1, "eth0", lab.host, "v1")
        lab.veth(c2, "eth0", lab.host, "v2")
        c1.address("eth0", "10.77.1.2/24")
        c2.address("eth0", "10.77.2.2/24")
        lab.host.address("v1", "10.77.1.1/24").address("v2", "10.77.2.1/24")
        lab.host.sysctl("net.ipv4.ip_forward", 1)
        c1.route("10.77.2.0/24", via="10.77.1.1")
        c2.route("10.77.1.0/24", via="10.77.2.1")
        c2.serve_dns(53, {"web": "10.77.2.9"})
        if drop:
            lab.host.iptables("filter").append("FORWARD", "-d 10.77.2.2/32 -p udp -m udp --dport 53 -j DROP")
        lab.expect_dns("c1", "10.77.2.2", "web", "10.77.2.9")
"""


def test_failing_dns_check_is_captured_on_udp_53(nsbox, tmp_path):
    """--artifacts with a failing DNS check: no crash (it once died on an AssertionError,
    the re-probe had no query), the capture filter is the DNS probe's udp port, and
    tcpdump sees the re-sent query leave c1 and never reach c2."""
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "dns.py").write_text(textwrap.dedent(DNS_RECIPE))
    out = tmp_path / "art"
    run = nsbox.run("run", "artifacts-dns", "--recipes", str(d), "--artifacts", str(out), "--format", "json",
                    "--timeout", "0.5", "--settle", "0.5")
    assert run.returncode == 1, run.describe()
    assert "Traceback" not in run.stderr and "AssertionError" not in run.stderr, run.stderr
    files = files_of(run, "dns c1: web")
    summary = json.loads((out / "artifacts-dns" / "summary.json").read_text())
    cap = summary["checks"][0]["capture"]
    assert cap["filter"].startswith("(host 10.77.2.2 and udp port 53)"), cap
    queries = lambda name: [ln for ln in tcpdump_read(files[name]) if "> 10.77.2.2.53:" in ln]  # noqa: E731
    assert queries("c1/capture-dns_c1-_web.pcap"), files
    assert not queries("c2/capture-dns_c1-_web.pcap")
    drops = [ln for ln in files["host/iptables.txt"].read_text().splitlines()
             if ln.endswith("-A FORWARD -d 10.77.2.2/32 -p udp -m udp --dport 53 -j DROP")]
    assert len(drops) == 1 and int(drops[0][1:].split(":", 1)[0]) >= 1, drops
