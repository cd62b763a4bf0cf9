"""Docker 20.10's iptables layout (the book's era, Debian 12's docker.io 20.10.24).

A port of moby v20.10.24's vendored libnetwork: `drivers/bridge/setup_ip_tables.go`
(setupIPChains, setupIPTablesInternal, setIcc, setINC, setupInternalNetworkRules),
`iptables/iptables.go` (ProgramChain, Forward, EnsureJumpRule, AddReturnRule) and
`firewall_linux.go` (arrangeUserFilterRule), driven in dockerd's order: driver init,
then per network the bridge setup steps (iptables, then isolation rules) and the
controller's DOCKER-USER re-arrangement, then per endpoint the port mapper's rules.

Differences from Docker 29 a reader meets: FORWARD holds per-bridge rules directly;
networks are isolated by DOCKER-ISOLATION-STAGE-1/2; `DOCKER-USER -j RETURN`; nat
`-A DOCKER -i <bridge> -j RETURN` with the proxy on; a per-port hairpin MASQUERADE even
with the proxy on; no raw table; nothing in ip6tables unless `--ip6tables` (experimental,
off by default: pass `DaemonConfig(ipv6=False)`, as dockerd 20.10 behaves by default).
Called as `iptables.render(..., layout="20.10")`.
"""

from __future__ import annotations

from typing import Iterable

from nsbox.kits.dockerfw.config import DaemonConfig, IPNetwork, Network, NetworkConfig, PortBinding
from nsbox.kits.dockerfw.xtables import DOCKER, DOCKER_USER, ISOLATION_1, ISOLATION_2, Ruleset
from nsbox.kits.dockerfw.xtables import dport as _dport
from nsbox.kits.dockerfw.xtables import host as _host
from nsbox.kits.dockerfw.xtables import join_host_port as _join_host_port
from nsbox.kits.dockerfw.xtables import loopback as _loopback


def setup_ip_chains(rs: Ruleset) -> None:
    """Driver init: the chains, and RETURN at the end of both isolation chains."""
    rs.new_chain("nat", DOCKER)
    for chain in (DOCKER, ISOLATION_1, ISOLATION_2):
        rs.new_chain("filter", chain)
    rs.append("filter", ISOLATION_1, "-j RETURN")
    rs.append("filter", ISOLATION_2, "-j RETURN")


def setup_ip_tables(rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig, addr: IPNetwork) -> None:
    """setupIPTables for one network (setupIP4Tables / setupIP6Tables)."""
    br, hairpin = nc.bridge, daemon.hairpin
    if nc.internal:
        setup_internal_network_rules(rs, br, addr, nc.icc)
    else:
        setup_ip_tables_internal(rs, nc, addr, hairpin)
        program_chain_nat(rs, family, hairpin)
        # ProgramChain(filterChain): both inserted at the top of FORWARD.
        rs.insert("filter", "FORWARD", f"-o {br} -j {DOCKER}")
        rs.insert("filter", "FORWARD", f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    rs.ensure_jump("filter", "FORWARD", ISOLATION_1)


def setup_ip_tables_internal(rs: Ruleset, nc: NetworkConfig, addr: IPNetwork, hairpin: bool) -> None:
    br = nc.bridge
    host_ip = nc.host_ipv4 if addr.version == 4 else nc.host_ipv6
    # SNAT to the given host address, else MASQUERADE (source picked by the route).
    to = f"-j SNAT --to-source {host_ip}" if host_ip is not None else "-j MASQUERADE"
    if nc.masquerade:
        rs.insert("nat", "POSTROUTING", f"-s {addr} ! -o {br} {to}")
    if nc.masquerade and not hairpin:
        # With docker-proxy, packets from the bridge to a published port are not DNATed.
        rs.insert("nat", DOCKER, f"-i {br} -j RETURN")
    if hairpin:
        # Without docker-proxy, masquerade traffic from the host's own addresses.
        rs.insert("nat", "POSTROUTING", f"-o {br} -m addrtype --src-type LOCAL {to}")
    set_icc(rs, br, nc.icc)
    # Accept all non-intercontainer outgoing packets.
    rs.insert("filter", "FORWARD", f"-i {br} ! -o {br} -j ACCEPT")


def set_icc(rs: Ruleset, br: str, icc: bool) -> None:
    accept, drop = f"-i {br} -o {br} -j ACCEPT", f"-i {br} -o {br} -j DROP"
    if not icc:
        rs.delete("filter", "FORWARD", accept)
        rs.append("filter", "FORWARD", drop)
    else:
        rs.delete("filter", "FORWARD", drop)
        rs.insert("filter", "FORWARD", accept)


def program_chain_nat(rs: Ruleset, family: int, hairpin: bool) -> None:
    """ProgramChain(natChain): the jumps to nat DOCKER, appended once."""
    rs.append("nat", "PREROUTING", f"-m addrtype --dst-type LOCAL -j {DOCKER}")
    skip_lo = "" if hairpin else f"! -d {_loopback(family)} "
    rs.append("nat", "OUTPUT", f"{skip_lo}-m addrtype --dst-type LOCAL -j {DOCKER}")


def setup_internal_network_rules(rs: Ruleset, br: str, addr: IPNetwork, icc: bool) -> None:
    rs.insert("filter", ISOLATION_1, f"! -d {addr} -i {br} -j DROP")
    rs.insert("filter", ISOLATION_1, f"! -s {addr} -o {br} -j DROP")
    set_icc(rs, br, icc)


def set_inc(rs: Ruleset, br: str) -> None:
    """Inter-network isolation: leaving this bridge for another interface goes to stage 2,
    which drops what enters any other bridge."""
    rs.insert("filter", ISOLATION_1, f"-i {br} ! -o {br} -j {ISOLATION_2}")
    rs.insert("filter", ISOLATION_2, f"-o {br} -j DROP")


def arrange_user_filter_rule(rs: Ruleset) -> None:
    """controller.NewNetwork → arrangeUserFilterRule (IPv4 only: "TODO IPv6 support")."""
    rs.new_chain("filter", DOCKER_USER)
    rs.append("filter", DOCKER_USER, "-j RETURN")
    rs.ensure_jump("filter", "FORWARD", DOCKER_USER)


def forward(rs: Ruleset, daemon: DaemonConfig, nc: NetworkConfig, pb: PortBinding) -> None:
    """portmapper AppendForwardingTableEntry → ChainInfo.Forward (all appends)."""
    dst = "" if pb.host_ip.is_unspecified else f"-d {_host(pb.host_ip)} "
    iif = "" if daemon.hairpin else f"! -i {nc.bridge} "
    c = pb.container_ip
    rs.append("nat", DOCKER, f"{dst}{iif}{_dport(pb.proto, pb.host_port)} -j DNAT "
                             f"--to-destination {_join_host_port(c, pb.container_port)}")
    rs.append("filter", DOCKER, f"-d {_host(c)} ! -i {nc.bridge} -o {nc.bridge} "
                                f"{_dport(pb.proto, pb.container_port)} -j ACCEPT")
    rs.append("nat", "POSTROUTING", f"-s {_host(c)} -d {_host(c)} {_dport(pb.proto, pb.container_port)} -j MASQUERADE")
    if pb.proto == "sctp":
        # Kernels <= 4.9 enable SCTP CRC offload on veth: fill the checksum in.
        rs.append("mangle", "POSTROUTING", f"-p sctp -m sctp --sport {pb.container_port} -j CHECKSUM --checksum-fill")


def render(daemon: DaemonConfig, networks: Iterable[Network], family: int) -> dict[str, list[str]]:
    """filter and nat (and mangle when an sctp port is published) as dockerd 20.10 leaves
    them; `iptables-save` omits the raw table 20.10 never touches."""
    rs = Ruleset()
    enabled = daemon.ipv4 if family == 4 else daemon.ipv6
    networks = list(networks)
    for nc, _, _ in networks:
        if nc.gateway_mode_ipv4 != "nat" or nc.gateway_mode_ipv6 != "nat":
            raise ValueError(f"{nc.bridge}: Docker 20.10 has no gateway modes (only nat)")
    if not enabled:
        return {}
    setup_ip_chains(rs)
    for nc, _, bindings in networks:
        addr = nc.ipv4 if family == 4 else nc.ipv6
        if addr is not None:
            setup_ip_tables(rs, family, daemon, nc, addr)
        if not nc.internal:
            set_inc(rs, nc.bridge)  # for every network, IPv6 ones included (isolateNetwork)
        if family == 4:
            arrange_user_filter_rule(rs)
        for pb in bindings:
            if pb.container_ip.version == family == pb.host_ip.version and pb.host_port and not nc.internal:
                forward(rs, daemon, nc, pb)
    if not networks and family == 4:
        arrange_user_filter_rule(rs)
    names = ["filter", "nat"] + (["mangle"] if any(rs.chains["mangle"].values()) else [])
    return rs.tables(names)
