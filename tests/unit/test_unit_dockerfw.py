"""nsbox.kits.dockerfw against Docker 29's own firewall test matrix.

tests/data/docker29/goldens/ (vendored: tests/data/docker29/SOURCE.md) holds the golden outputs of moby's TestIptabler and
TestNftabler (moby b985e2313a). Every file is a test here: the scenario is rebuilt from the
file's NAME, as goldens/README.md describes what each moby test builds (network br-dummy
192.168.0.0/24 + fd49:efd7:54aa::/64, endpoint .2 / ::1, tcp 80 published on 8080 on
0.0.0.0 and :: or, bindlh=true, 127.0.0.1 and ::1), rendered by the pure renderers, and
compared with Docker's file as text, byte for byte: the README states no normalisation
(the comments it says were stripped are not in the files, and nsbox prints none).

Also: the daemon-level listings of docker29/*.rules (a new daemon with docker0, user
networks with a published port, proxy off, icc off, --internal), which add DOCKER-USER and
the default bridge, i.e. the parts `daemon_rules()` adds around the iptabler.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from nsbox.kits.dockerfw import iptables as ipt
from nsbox.kits.dockerfw import nftables as nft
from nsbox.kits.dockerfw.config import DaemonConfig, Endpoint, NetworkConfig, PortBinding
from tests.support.golden import REFERENCE, parse_save
from tests.support.paths import DATA

GOLDENS = REFERENCE / "goldens"
IPT_FILES = sorted((GOLDENS / "iptables").glob("*.golden"))
NFT_FILES = sorted((GOLDENS / "nftables").glob("*.golden"))

# What moby's tests build (iptabler_test.go / nftabler_test.go, goldens/README.md).
BRIDGE = "br-dummy"
SUBNET4, SUBNET6 = ipaddress.ip_network("192.168.0.0/24"), ipaddress.ip_network("fd49:efd7:54aa::/64")
EP4, EP6 = ipaddress.ip_address("192.168.0.2"), ipaddress.ip_address("fd49:efd7:54aa::1")
SNAT4, SNAT6 = ipaddress.ip_address("192.168.123.0"), ipaddress.ip_address("fd34:d0d4:672f::123")


def scenario(stem: str) -> tuple[DaemonConfig, list[ipt.Network]]:
    """The daemon and network a golden file's name describes."""
    if stem == "no":  # the family disabled (moby: IPv4 / IPv6 false): no Docker rules at all
        return DaemonConfig(ipv4=False, ipv6=False), []
    parts = stem.split(",")
    cleaned = parts[0] == "cleaned"
    opts = dict(p.split("=", 1) for p in parts if "=" in p)
    unknown = set(opts) - {"hairpin", "internal", "icc", "masq", "snat", "gwm", "bindlh"}
    assert not unknown, f"option(s) the README does not describe: {unknown}"

    def flag(name: str) -> bool:
        value = opts.get(name, "false")
        assert value in ("true", "false"), f"{name}={value}"
        return value == "true"

    daemon = DaemonConfig(userland_proxy=not flag("hairpin"))
    if cleaned:
        return daemon, []
    gwm = opts.get("gwm", "nat")  # internal files share one result over every gwm
    snat = flag("snat")
    net = NetworkConfig(
        bridge=BRIDGE, ipv4=SUBNET4, ipv6=SUBNET6,
        internal=flag("internal"), icc=flag("icc"), masquerade=flag("masq"),
        host_ipv4=SNAT4 if snat else None, host_ipv6=SNAT6 if snat else None,
        gateway_mode_ipv4=gwm, gateway_mode_ipv6=gwm,  # type: ignore[arg-type]
    )
    host4, host6 = ("127.0.0.1", "::1") if flag("bindlh") else ("0.0.0.0", "::")
    bindings = [
        PortBinding("tcp", ipaddress.ip_address(host4), 8080, EP4, 80),
        PortBinding("tcp", ipaddress.ip_address(host6), 8080, EP6, 80),
    ]
    return daemon, [(net, [Endpoint(EP4, EP6)], bindings)]


def split_name(path: Path) -> tuple[str, str]:
    stem, _, kind = path.name.removesuffix(".golden").rpartition("__")
    return stem, kind


@pytest.mark.parametrize("path", IPT_FILES, ids=[p.name for p in IPT_FILES])
def test_iptables_golden(path: Path) -> None:
    stem, kind = split_name(path)
    family = {"iptables": 4, "ip6tables": 6}[kind]
    daemon, networks = scenario(stem)
    got = ipt.save_text(ipt.render(daemon, networks, family))  # type: ignore[arg-type]
    assert got.splitlines() == path.read_text().splitlines()
    assert got == path.read_text()


@pytest.mark.parametrize("path", NFT_FILES, ids=[p.name for p in NFT_FILES])
def test_nftables_golden(path: Path) -> None:
    stem, kind = split_name(path)
    family = {"ip": 4, "ip6": 6}[kind]
    daemon, networks = scenario(stem)
    got = nft.render(daemon, networks, family)  # type: ignore[arg-type]
    assert got.splitlines() == path.read_text().splitlines()
    assert got == path.read_text()


def test_the_whole_matrix_is_there() -> None:
    """Guard against a silently shrunken reference: moby's matrix is 4 cleaned + 1 'no' +
    4 internal + 2*2*2*2*3*2 non-internal results per kind (iptables) and the same without
    'no' (nftables), each for two families."""
    assert len(IPT_FILES) == 2 * (2 + 1 + 4 + 96)
    assert len(NFT_FILES) == 2 * (2 + 4 + 96)


def test_disabled_family_has_no_nft_table() -> None:
    assert nft.render(DaemonConfig(ipv6=False), [], 6) == ""


# --------------------------------------------------------- docker29/*.rules (daemon level)

DOCKER0 = NetworkConfig("docker0", ipv4=ipaddress.ip_network("172.17.0.0/16"))
BRIDGE1 = NetworkConfig("bridge1", ipv4=ipaddress.ip_network("192.0.2.0/24"))
C1 = ipaddress.ip_address("192.0.2.2")
PUBLISH_8080 = PortBinding("tcp", ipaddress.ip_address("0.0.0.0"), 8080, C1, 80)


def rules_file(name: str) -> dict[str, list[str]]:
    return parse_save((REFERENCE / name).read_text())


def daemon_level(daemon: DaemonConfig, networks: list[ipt.Network]) -> dict[str, list[str]]:
    # The generated listings were taken on a host that already forwarded: policy ACCEPT.
    return ipt.daemon_rules(ipt.render(daemon, networks, 4), forward_drop=False)


@pytest.mark.parametrize(
    "name,daemon,networks",
    [
        ("new-daemon.rules", DaemonConfig(), [(DOCKER0, [], [])]),
        ("usernet-portmap.rules", DaemonConfig(),
         [(DOCKER0, [], []), (BRIDGE1, [Endpoint(C1)], [PUBLISH_8080])]),
        ("usernet-portmap-noproxy.rules", DaemonConfig(userland_proxy=False),
         [(DOCKER0, [], []), (BRIDGE1, [Endpoint(C1)], [PUBLISH_8080])]),
        ("usernet-portmap-noicc.rules", DaemonConfig(),
         [(DOCKER0, [], []),
          (NetworkConfig("bridge1", ipv4=BRIDGE1.ipv4, icc=False), [Endpoint(C1)], [PUBLISH_8080])]),
        ("usernet-internal.rules", DaemonConfig(),
         [(DOCKER0, [], []),
          (NetworkConfig("bridgeICC", ipv4=ipaddress.ip_network("192.0.2.0/24"), internal=True),
           [Endpoint(C1)], []),
          (NetworkConfig("bridgeNoICC", ipv4=ipaddress.ip_network("198.51.100.0/24"), internal=True, icc=False),
           [Endpoint(ipaddress.ip_address("198.51.100.2"))], [])]),
    ],
)
def test_docker29_listing(name: str, daemon: DaemonConfig, networks: list[ipt.Network]) -> None:
    """The listings hold filter and/or nat (no raw): compare the tables each one holds."""
    want = rules_file(name)
    # parse_save (tests/support/golden.py) reads both texts the same way (no counters).
    got = parse_save(ipt.save_text(daemon_level(daemon, networks)))
    assert want, name
    for table, lines in want.items():
        assert got[table] == lines, table


def test_daemon_rules_forward_drop_and_user_chain_first() -> None:
    tables = ipt.daemon_rules(ipt.render(DaemonConfig(), [(DOCKER0, [], [])], 4), forward_drop=True)
    assert ":FORWARD DROP [0:0]" in tables["filter"]
    forward = [ln for ln in tables["filter"] if ln.startswith("-A FORWARD ")]
    assert forward == ["-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-FORWARD"]
    # Applying it twice changes nothing (EnsureJumpRule deletes before inserting).
    assert ipt.daemon_rules(tables, forward_drop=True) == tables


def test_isolated_gateway_mode_is_nat_for_the_firewall() -> None:
    """moby's gwMode.routed()/unprotected() are false for "isolated": the firewaller gets
    the nat config (the bridge simply has no gateway address)."""
    def one(mode: str) -> dict[str, list[str]]:
        n = NetworkConfig(BRIDGE, ipv4=SUBNET4, gateway_mode_ipv4=mode)  # type: ignore[arg-type]
        return ipt.render(DaemonConfig(), [(n, [Endpoint(EP4)], [])], 4)
    assert one("isolated") == one("nat")


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="gateway mode"):
        NetworkConfig(BRIDGE, gateway_mode_ipv4="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not IPv4"):
        NetworkConfig(BRIDGE, ipv4=SUBNET6)
    with pytest.raises(ValueError, match="protocol"):
        PortBinding("icmp", EP4, 1, EP4, 1)
    with pytest.raises(ValueError, match="family"):
        ipt.render(DaemonConfig(), [], 5)  # type: ignore[arg-type]


# ------------------------------------- Docker 20.10 layout against the real dockerd 20.10

REALDOCKER = DATA / "realdocker"
# tests/support/realdocker/scenarios.py: what each dump's daemon had (a fresh daemon per scenario
# set, containers removed between scenarios). dockerd 20.10 writes no ip6tables rules:
# --ip6tables is experimental and off.
PROXY_ON_2010 = DaemonConfig(ipv6=False)
PROXY_OFF_2010 = DaemonConfig(ipv6=False, userland_proxy=False)
DOCKER0_ONLY: list[ipt.Network] = [(DOCKER0, [], [])]
WEB = ipaddress.ip_address("172.17.0.2")
# `-p 8080:80` binds 0.0.0.0 and ::; the :: one goes to an IPv4 container: docker-proxy only.
PUBLISH_WEB = [PortBinding("tcp", ipaddress.ip_address("0.0.0.0"), 8080, WEB, 80),
               PortBinding("tcp", ipaddress.ip_address("::"), 8080, WEB, 80)]
MYNET = NetworkConfig("br-0123456789ab", ipv4=ipaddress.ip_network("10.99.0.0/24"))  # normalised to br-<net1>
U1 = PortBinding("tcp", ipaddress.ip_address("0.0.0.0"), 9090, ipaddress.ip_address("10.99.0.2"), 80)
SCENARIOS_2010: dict[str, tuple[DaemonConfig, list[ipt.Network]]] = {
    "daemon": (PROXY_ON_2010, DOCKER0_ONLY),
    "bridge-mode": (PROXY_ON_2010, DOCKER0_ONLY),  # endpoints add no rule in 20.10
    "host-mode": (PROXY_ON_2010, DOCKER0_ONLY),
    "none-mode": (PROXY_ON_2010, DOCKER0_ONLY),
    "container-mode": (PROXY_ON_2010, DOCKER0_ONLY),
    "publish-proxy-on": (PROXY_ON_2010, [(DOCKER0, [Endpoint(WEB)], PUBLISH_WEB)]),
    "publish-proxy-off": (PROXY_OFF_2010, [(DOCKER0, [Endpoint(WEB)], PUBLISH_WEB)]),
    "user-network": (PROXY_ON_2010, [(DOCKER0, [], []), (MYNET, [Endpoint(U1.container_ip)], [U1])]),
}


def test_every_real_host_dump_has_a_scenario() -> None:
    hosts = sorted(p.name.removesuffix(".host.rules") for p in REALDOCKER.glob("*.host.rules"))
    assert hosts == sorted(SCENARIOS_2010)


@pytest.mark.parametrize("name", sorted(SCENARIOS_2010))
def test_layout_2010_equals_the_real_dockerd(name: str) -> None:
    """The real dockerd 20.10.24's iptables-save (tests/data/realdocker, normalised by
    tests/support/realdocker/normalize.py: counters, comments, random bridge ids) equals the
    20.10 layout rendered for the same scenario, with FORWARD DROP (dockerd turned on
    ip_forward in its fresh namespace)."""
    from tests.support.realdocker.normalize import normalize

    daemon, networks = SCENARIOS_2010[name]
    got = normalize(ipt.save_text(ipt.forward_drop(ipt.render(daemon, networks, 4, layout="20.10"))))
    assert got.splitlines() == (REALDOCKER / f"{name}.host.rules").read_text().splitlines()
    assert ipt.render(daemon, networks, 6, layout="20.10") == {}


def test_layout_2010_refuses_gateway_modes() -> None:
    routed = NetworkConfig("br-x", ipv4=SUBNET4, gateway_mode_ipv4="routed")
    with pytest.raises(ValueError, match="20.10 has no gateway modes"):
        ipt.render(DaemonConfig(), [(routed, [], [])], 4, layout="20.10")


def test_embedded_dns_rules_equal_the_real_containers() -> None:
    """u2's own nat table on the real dockerd 20.10 (user network): the resolver's
    DOCKER_OUTPUT / DOCKER_POSTROUTING rules, random ports normalised by the same
    normaliser (so any two ports do)."""
    from tests.support.realdocker.normalize import normalize

    from nsbox.kits.dockerfw import resolver

    got = normalize(ipt.save_text(resolver.iptables_rules(udp_port=43210, tcp_port=40000)))
    assert got.splitlines() == (REALDOCKER / "user-network.u2.rules").read_text().splitlines()
