"""The docker kit (nsbox/kits/docker/).

1. bridge-mode rewritten on the kit builds the same lab as before it: the model
   (lab_to_dict JSON: nodes, links, addresses, routes, sysctls, every table of both
   families, servers, checks in order) and the `nsbox explain` script equal the
   dumps taken from the recipe before the rewrite (tests/data/kits/), but for the one
   deliberate change: bridge-nf-call-ip{,6}tables set to a stock host's 0 (issue 6,
   item 10).
2. Docker's own firewall test matrix (tests/data/docker29/goldens/iptables, vendored):
   every combination rendered with the kit equals Docker's file line for line, with
   no normalisation (counters are rendered as `[0:0]`, as the goldens have them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nsbox import recipe
from nsbox.errors import UsageError, ValidationError
from nsbox.kits import docker
from nsbox.kits.docker.daemon import sort_port_map_2010
from nsbox.model import Lab
from nsbox.model.firewall import Table
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.plan.explain import script
from nsbox.validate import validate

from tests.support.golden import REFERENCE
from tests.support import paths

DATA = paths.DATA / "kits"
GOLDENS = REFERENCE / "goldens" / "iptables"
BR_NF = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


# ------------------------------------------------------------------ 1. identity


def _with_stock_br_netfilter(old: dict) -> dict:
    """The pre-kit dump, read by today's model (lab_from_dict gives fields added to the
    model since, e.g. a check's reply_src, their defaults), plus the deliberate changes:
    the host sets both br_netfilter keys to 0, optional, right after ip_forward (issue 6);
    the container as Docker makes it (issue 14, item 7): docker0 and each container's eth0
    with txqueuelen 0, eth0 with a MAC of Docker 29's kind (random, here a stable hash),
    and the runtime's two sysctls (ping_group_range, ip_unprivileged_port_start) first."""
    old = json.loads(json.dumps(lab_to_dict(lab_from_dict(old))))
    for node in old["nodes"]:
        if node["name"] == "host":
            for i in node["interfaces"]:
                if i["name"] == "docker0":
                    i["txqueuelen"] = 0
        elif re.fullmatch(r"c\d+", node["name"]):
            ip = next(a["cidr"].split("/")[0] for a in node["addresses"] if a["iface"] == "eth0")
            for i in node["interfaces"]:
                if i["name"] == "eth0":
                    i["txqueuelen"] = 0
                    i["mac"] = docker.Daemon.container_mac(_mac_daemon(), _NET, node["name"], ip)
            node["sysctls"] = {**docker.CONTAINER_SYSCTLS, **node["sysctls"]}
            node["optional_sysctls"] = sorted([*node["optional_sysctls"], *docker.CONTAINER_SYSCTLS])
    host = next(n for n in old["nodes"] if n["name"] == "host")
    sysctls = {}
    for k, v in host["sysctls"].items():
        sysctls[k] = v
        if k == "net.ipv4.ip_forward":
            sysctls.update({key: "0" for key in BR_NF})
    host["sysctls"] = sysctls
    host["optional_sysctls"] = sorted([*host["optional_sysctls"], *BR_NF])
    return old


def _mac_daemon() -> docker.Daemon:
    lab = Lab("mac")
    return docker.Daemon(lab, lab.host)


_NET = docker.Network("bridge", "docker0", docker.DEFAULT_SUBNET, "172.17.0.1")


@pytest.mark.parametrize("containers", [2, 5])
def test_bridge_mode_on_the_kit_builds_the_same_model(containers: int) -> None:
    lab = recipe.get("bridge-mode").build({"containers": str(containers)})
    validate(lab)
    want = _with_stock_br_netfilter(json.loads((DATA / f"bridge-mode.c{containers}.json").read_text()))
    got = json.loads(json.dumps(lab_to_dict(lab)))
    # Compared as JSON text, so the order of everything (nodes, chains, rules, checks) counts.
    assert json.dumps(got, indent=1) == json.dumps(want, indent=1)


@pytest.mark.parametrize("containers", [2, 5])
def test_bridge_mode_on_the_kit_explains_the_same_script(containers: int) -> None:
    """The explained script of the kit's lab equals that of the pre-kit lab (rebuilt from
    its dump, with the br_netfilter change), both rendered by today's explain; the dumped
    script records what it was when the dump was taken."""
    lab = recipe.get("bridge-mode").build({"containers": str(containers)})
    cmd = "nsbox explain bridge-mode" + ("" if containers == 2 else f" --set containers={containers}")
    old = lab_from_dict(_with_stock_br_netfilter(json.loads((DATA / f"bridge-mode.c{containers}.json").read_text())))
    got = script(lab, cmd)
    assert got == script(old, cmd)
    for key in BR_NF:
        assert f"ip netns exec host sysctl -qw {key}=0 2>/dev/null || true" in got


def test_the_identity_reference_is_not_trivially_met() -> None:
    """Negative control: one container more, or the kit's dual-stack switch, differs."""
    old = json.loads((DATA / "bridge-mode.c2.json").read_text())
    for sets in ({"containers": "3"}, {"ipv6": "true"}, {"docker": "20.10"}):
        lab = recipe.get("bridge-mode").build(sets)
        assert json.loads(json.dumps(lab_to_dict(lab))) != _with_stock_br_netfilter(json.loads(json.dumps(old)))


# ------------------------------------------------------------------ kit behaviour


def _lab() -> Lab:
    return Lab("t")


def test_icc_false_turns_br_netfilter_on_and_not_optional() -> None:
    lab = _lab()
    d = docker.Daemon(lab, lab.host)
    assert lab.host.sysctls[BR_NF[0]] == "0" and BR_NF[0] in lab.host.optional_sysctls
    d.network_create("noicc", subnet="172.18.0.0/16", icc=False)
    assert lab.host.sysctls[BR_NF[0]] == "1" and BR_NF[0] not in lab.host.optional_sysctls
    assert lab.host.sysctls[BR_NF[1]] == "0"  # IPv4-only network


def test_br_netfilter_as_each_layout_has_it() -> None:
    """20.10 loads br_netfilter at start (1) and sets it again only for icc=false; Docker
    28+ leaves a stock host's 0 and sets 1 for icc=false or --userland-proxy=false
    (moby db25b0dc and 0548fe25); br_netfilter= overrides the host's value."""
    def brnf(layout: str, **kw: object) -> str:
        lab = _lab()
        net_kw = {"icc": kw.pop("icc")} if "icc" in kw else {}
        d = docker.Daemon(lab, lab.host, layout=layout, **kw)  # type: ignore[arg-type]
        d.network_create("n", subnet="172.18.0.0/16", **net_kw)  # type: ignore[arg-type]
        return lab.host.sysctls[BR_NF[0]]

    assert brnf("20.10") == "1"
    assert brnf("20.10", br_netfilter=False) == "0"
    assert brnf("20.10", br_netfilter=False, userland_proxy=False) == "0"  # 20.10: icc=false only
    assert brnf("20.10", br_netfilter=False, icc=False) == "1"
    assert brnf("29") == "0"
    assert brnf("29", br_netfilter=True) == "1"
    assert brnf("29", userland_proxy=False) == "1"
    assert brnf("29", icc=False) == "1"


def test_ipam_hands_out_addresses_in_order_after_the_gateway() -> None:
    lab = _lab()
    d = docker.Daemon(lab, lab.host, ipv6=True)
    net = d.default_bridge()
    c1, c2 = d.run("c1", net), d.run("c2", net)
    assert [a.cidr for a in c1.addresses] == ["172.17.0.2/16", "2001:db8:1::2/64"]
    assert [a.cidr for a in c2.addresses] == ["172.17.0.3/16", "2001:db8:1::3/64"]
    assert "net.ipv6.conf.eth0.disable_ipv6" not in c1.sysctls
    assert c1.addresses[1].nodad and lab.host.addresses_of("docker0")[1].nodad  # IFA_F_NODAD, as moby
    assert lab.host.firewall.table("filter", 6).chains["FORWARD"].policy == "DROP"
    assert [r.render() for r in lab.host.firewall.table("raw", 6).chains["PREROUTING"].rules] == [
        "-d 2001:db8:1::2/128 ! -i docker0 -j DROP", "-d 2001:db8:1::3/128 ! -i docker0 -j DROP"]


@pytest.mark.parametrize("bad", ["80", "8080:80/sctp", "99999:80", "300.1.1.1:8080:80", "[zz]:1:2"])
def test_bad_publish_is_refused_in_one_line(bad: str) -> None:
    lab = _lab()
    d = docker.Daemon(lab, lab.host)
    with pytest.raises(ValidationError, match=r"bad -p"):
        d.run("c1", d.default_bridge(), publish=[bad])


def test_unknown_layout_and_gateway_mode_are_refused() -> None:
    lab = _lab()
    with pytest.raises(ValidationError, match="unknown Docker layout"):
        docker.Daemon(lab, lab.host, layout="19.03")
    d = docker.Daemon(lab, lab.host)
    with pytest.raises(ValidationError, match="gateway_mode"):
        d.network_create("n", subnet="10.0.0.0/24", gateway_mode="bogus")  # type: ignore[arg-type]


def test_bridge_mode_ipv6_with_docker_2010_is_refused() -> None:
    with pytest.raises(ValidationError, match="ipv6=true needs docker=29"):
        recipe.get("bridge-mode").build({"docker": "20.10", "ipv6": "true"})


def test_bridge_mode_docker_parameter_is_checked_before_building() -> None:
    with pytest.raises(UsageError, match="must be one of 29, 29-nftables, 20.10"):
        recipe.get("bridge-mode").build({"docker": "19.03"})


def test_bridge_mode_docker_2010_rules_equal_the_real_dockerd_dump() -> None:
    """The 20.10 layout against tests/data/realdocker/bridge-mode.host.rules (the real
    dockerd 20.10's normalised iptables-save; the kernel test compares the live lab)."""
    lab = recipe.get("bridge-mode").build({"docker": "20.10"})
    want: dict[str, list[str]] = {}
    table = ""
    for line in (paths.DATA / "realdocker" / "bridge-mode.host.rules").read_text().splitlines():
        if line.startswith("*"):
            table = line[1:]
            want[table] = []
        elif line != "COMMIT":
            want[table].append(line)
    got = {t.name: t.save_lines() for t in lab.host.firewall.used_tables(4)}
    assert got == want
    assert lab.host.firewall.used_tables(6) == []


# ------------------------------------------------------------------ 2. Docker's goldens


def _options(stem: str) -> dict[str, str]:
    return dict(kv.split("=") for kv in stem.split(","))


def golden_daemon(stem: str, layout: str = "29") -> tuple[Lab, docker.Daemon]:
    """The kit's Docker host for one golden file's scenario (see goldens/README.md)."""
    lab = _lab()
    if stem == "no":
        d = docker.Daemon(lab, lab.host, layout=layout, iptables=False, docker_user=False, host_forwarding=True)
    else:
        o = _options(stem.replace("cleaned,", ""))
        # port_mappers=False: moby's firewaller tests hand it HostPort 8080 even on a routed
        # network (dockerd's routed port mapper would have dropped it first).
        d = docker.Daemon(lab, lab.host, layout=layout, userland_proxy=o["hairpin"] == "false", docker_user=False,
                          host_forwarding=True, port_mappers=False)
        if not stem.startswith("cleaned"):
            internal = o["internal"] == "true"
            net = d.network_create("dummy", bridge="br-dummy", subnet="192.168.0.0/24",
                                   ipv6_subnet="fd49:efd7:54aa::/64", ipv6_gateway="fd49:efd7:54aa::fe",
                                   internal=internal, icc=o["icc"] == "true",
                                   masquerade=o.get("masq", "true") == "true", gateway_mode=o.get("gwm", "nat"),  # type: ignore[arg-type]
                                   host_ipv4="192.168.123.0" if o.get("snat") == "true" else None,
                                   host_ipv6="fd34:d0d4:672f::123" if o.get("snat") == "true" else None)
            publish = ["127.0.0.1:8080:80", "[::1]:8080:80"] if o.get("bindlh") == "true" else ["8080:80"]
            d.run("c1", net, ip="192.168.0.2", ip6="fd49:efd7:54aa::1", publish=publish)
    return lab, d


def render_golden(stem: str, family: int) -> str:
    lab, _ = golden_daemon(stem)
    out = []
    for name in ("raw", "filter", "nat"):
        table = lab.host.firewall.family(family).get(name) or Table(name)
        out.append(f"*{name}")
        out += [f"{ln} [0:0]" if ln.startswith(":") else ln for ln in table.save_lines()]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


GOLDEN_FILES = sorted(GOLDENS.glob("*.golden")) if GOLDENS.is_dir() else []


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.name for p in GOLDEN_FILES])
def test_docker29_golden(path: Path) -> None:
    stem, fam = path.name.removesuffix(".golden").rsplit("__", 1)
    assert render_golden(stem, 6 if fam == "ip6tables" else 4) == path.read_text()


def test_every_golden_scenario_is_a_valid_lab() -> None:
    """bindlh=true publishes one port on 127.0.0.1 and ::1: two docker-proxy binds of one
    port on distinct addresses, which the kernel allows (validate used to refuse them)."""
    stems = sorted({p.name.rsplit("__", 1)[0] for p in GOLDEN_FILES})
    for stem in stems:
        lab, _ = golden_daemon(stem)
        validate(lab)


def test_one_port_on_two_addresses_of_one_family_and_the_wildcard() -> None:
    lab = _lab()
    lab.host.address("lo", "127.0.0.1/8")
    d = docker.Daemon(lab, lab.host)
    d.run("c1", d.default_bridge(), publish=["127.0.0.1:8080:80", "[::1]:8080:80"])
    assert sorted((p.host_ip, p.container_ip) for p in lab.host.proxies) == [
        ("127.0.0.1", "172.17.0.2"), ("::1", "172.17.0.2")]  # docker-proxy relays ::1 to the IPv4 container
    validate(lab)
    d.run("c2", d.networks["bridge"], publish=["8080:80"])  # 0.0.0.0:8080 beside 127.0.0.1:8080
    with pytest.raises(ValidationError, match="EADDRINUSE"):
        validate(lab)


def test_every_golden_is_covered() -> None:
    assert len(GOLDEN_FILES) >= 200, f"expected Docker's ~200 iptables goldens under {GOLDENS}"


def test_publish_with_the_proxy_runs_docker_proxy_and_declares_nothing_virtual() -> None:
    lab = _lab()
    d = docker.Daemon(lab, lab.host)
    d.run("c1", d.default_bridge(), publish=["8080:80", "127.0.0.1:5353:53/udp"])
    assert [(p.proto, p.host_ip, p.host_port, p.container_ip, p.container_port) for p in lab.host.proxies] == [
        ("tcp", "0.0.0.0", 8080, "172.17.0.2", 80), ("udp", "127.0.0.1", 5353, "172.17.0.2", 53)]
    assert lab.virtuals == []
    assert not any(i.hairpin for i in lab.host.interfaces.values())


def test_publish_without_the_proxy_hairpins_and_declares_the_hosts_ports() -> None:
    lab = _lab()
    lab.host.address("lo", "127.0.0.1/8")  # ignored: loopback is declared once, by the kit
    d = docker.Daemon(lab, lab.host, userland_proxy=False)
    net = d.default_bridge()
    d.run("c1", net, publish=["8080:80"])
    assert lab.host.proxies == []
    assert lab.host.interfaces[docker.veth_name(1)].hairpin is True
    assert lab.host.sysctls["net.ipv4.conf.docker0.route_localnet"] == "1"
    assert lab.host.sysctls[BR_NF[0]] == "1"
    assert sorted((v.ip, v.port) for v in lab.virtuals) == [("127.0.0.1", 8080), ("172.17.0.1", 8080)]


NFT_FILES = sorted((REFERENCE / "goldens" / "nftables").glob("*.golden")) if GOLDENS.is_dir() else []


@pytest.mark.parametrize("path", NFT_FILES, ids=[p.name for p in NFT_FILES])
def test_docker29_nftables_golden(path: Path) -> None:
    """docker=29-nftables: the kit's docker-bridges table equals Docker's file."""
    stem, fam = path.name.removesuffix(".golden").rsplit("__", 1)
    lab, d = golden_daemon(stem, "29-nftables")
    family = 6 if fam == "ip6" else 4
    assert (d.nft_text(family) if family in d.firewaller.tables else "") == path.read_text()
    assert not lab.host.firewall.used_tables(4) and not lab.host.firewall.used_tables(6)  # no iptables at all


def test_every_nftables_golden_is_covered() -> None:
    assert len(NFT_FILES) >= 200


def test_docker_user_rules_survive_dockers_own_rewrites() -> None:
    lab = _lab()
    d = docker.Daemon(lab, lab.host)
    d.docker_user("-s 198.51.100.0/24 -j DROP")
    net = d.default_bridge()
    d.run("c1", net)
    d.network_create("n2", subnet="172.18.0.0/16")
    assert [r.render() for r in lab.host.iptables("filter").chains["DOCKER-USER"].rules] == ["-s 198.51.100.0/24 -j DROP"]
    with pytest.raises(ValidationError, match="bad address"):
        d.docker_user("-s banana -j DROP")
    nft_lab = _lab()
    with pytest.raises(ValidationError, match="DOCKER-USER: no such chain"):
        docker.Daemon(nft_lab, nft_lab.host, layout="29-nftables").docker_user("-j DROP")


def test_docker_2010_writes_a_port_range_in_descending_order() -> None:
    """dockerd 20.10's nat.SortPortMap: larger host port first (the real daemon writes
    --dport 8081 before 8080, 81 before 80); Docker 29 keeps the range ascending."""
    def dnat_ports(layout: str) -> list[str]:
        lab = _lab()
        d = docker.Daemon(lab, lab.host, layout=layout)
        d.run("c1", d.default_bridge(), publish=["8080-8081:80-81"])
        rules = [r.spec for r in lab.host.firewall.table("nat", 4).chains["DOCKER"].rules]
        fil = [r.spec for r in lab.host.firewall.table("filter", 4).chains["DOCKER"].rules]
        return [s.split("--dport ")[1].split()[0] for s in rules + fil if "--dport" in s]

    assert dnat_ports("20.10") == ["8081", "8080", "81", "80"]
    assert dnat_ports("29") == ["8080", "8081", "81", "80"]  # 29 inserts each filter ACCEPT at the top


def test_sort_port_map_2010_replays_go_with_its_non_strict_less() -> None:
    ports = [docker.Port.parse(t) for t in ("127.0.0.1:8080:80", "[::1]:8080:80", "53:53/udp", "9000:90")]
    # 9000 first (largest host port), then 8080 (its two bindings swapped by the tcp tie), 53/udp
    assert [(p.host_port, p.host_ip) for p in sort_port_map_2010(ports)] == [
        (9000, None), (8080, "::1"), (8080, "127.0.0.1"), (53, None)]


@pytest.mark.parametrize("bad", [{"dns_local": 0}, {"dns_local": "53"}, {"dns_servfail": "yes"},
                                 {"udp_reply_from_route": 1}])
def test_a_proxys_dns_and_udp_options_are_validated(bad: dict) -> None:
    lab = _lab()
    lab.host.proxy("udp", 40000, "0.0.0.0", 53, host_ip="127.0.0.1", **bad)
    with pytest.raises(ValidationError, match="docker-proxy udp 127.0.0.1:40000"):
        validate(lab)
