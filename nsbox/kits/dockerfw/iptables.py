"""Docker 29's iptables rules for bridge networks (moby's `iptabler`), as `iptables-save` text.

A port of moby b985e2313a `daemon/libnetwork/drivers/bridge/internal/iptabler/`
(`iptabler.go` setupIPChains, `network.go`, `endpoint.go`, `port.go`): the same rules, in the
same order, added with the same insert/append/"no-op if it exists" semantics as moby's
`iptables.Rule.Insert/Append` and `EnsureJumpRule`. Each rule is spelt the way `iptables-save`
prints it back (`-s/-d/-i/-o/-p` first, `/32`, implicit `-m tcp`), so the output compares
line for line with `iptables-save -t raw; -t filter; -t nat` after dockerd ran.

Pure: no kernel, no model. `render()` is the iptabler; `daemon_rules()` adds what other parts
of dockerd add (DOCKER-USER, FORWARD policy DROP); `layout="20.10"` renders Docker 20.10's
older layout (DOCKER-ISOLATION-STAGE-1/2).
"""

from __future__ import annotations

from typing import Iterable, Literal

from nsbox.kits.dockerfw.config import (
    DaemonConfig,
    Endpoint,
    FamConfig,
    IPNetwork,
    Network,
    NetworkConfig,
    PortBinding,
)
from nsbox.kits.dockerfw.xtables import (  # noqa: F401  (re-exported: Ruleset, save_text, the chain names)
    BUILTIN,
    DOCKER,
    DOCKER_BRIDGE,
    DOCKER_CT,
    DOCKER_FORWARD,
    DOCKER_INTERNAL,
    DOCKER_USER,
    ISOLATION_1,
    ISOLATION_2,
    TABLES,
    Family,
    Ruleset,
    save_text,
)
from nsbox.kits.dockerfw.xtables import dport as _dport
from nsbox.kits.dockerfw.xtables import host as _host
from nsbox.kits.dockerfw.xtables import icmp as _icmp
from nsbox.kits.dockerfw.xtables import join_host_port as _join_host_port
from nsbox.kits.dockerfw.xtables import loopback as _loopback

# --- iptabler.go -----------------------------------------------------------------------

def setup_ip_chains(rs: Ruleset, family: int, daemon: DaemonConfig) -> None:
    """moby setupIPChains: the daemon-level skeleton (the `cleaned` golden)."""
    rs.new_chain("nat", DOCKER)
    for chain in (DOCKER, DOCKER_FORWARD, DOCKER_BRIDGE, DOCKER_CT, DOCKER_INTERNAL):
        rs.new_chain("filter", chain)
    add_nat_jump_rules(rs, family, daemon.hairpin)
    # "(Re-)insert at the top of the table, in reverse order."
    rs.ensure_jump("filter", "FORWARD", DOCKER_FORWARD)
    rs.ensure_jump("filter", DOCKER_FORWARD, DOCKER_BRIDGE)
    rs.ensure_jump("filter", DOCKER_FORWARD, DOCKER_INTERNAL)
    rs.ensure_jump("filter", DOCKER_FORWARD, DOCKER_CT)
    if family == 4 and not daemon.hairpin and daemon.wsl2_mirrored:
        # mirroredWSL2Workaround: Windows reaches Linux's 127.0.0.1 via loopback0; leave
        # those packets to docker-proxy rather than DNAT them (WSL2 has no ::1 path).
        rs.insert("nat", DOCKER, "-d 127.0.0.0/8 -i loopback0 -j RETURN")


def add_nat_jump_rules(rs: Ruleset, family: int, hairpin: bool) -> None:
    rs.append("nat", "PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    # With the userland proxy, connections to the host's loopback address are docker-proxy's.
    skip_lo = "" if hairpin else f"! -d {_loopback(family)} "
    rs.append("nat", "OUTPUT", f"{skip_lo}-m addrtype --dst-type LOCAL -j DOCKER")


# --- network.go ------------------------------------------------------------------------

def setup_network(rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig) -> None:
    """moby network.configure / setupIPTables for one family."""
    conf = nc.fam(family)
    if conf.prefix is None:  # "if !conf.Prefix.IsValid() { return nil }"
        return
    br = nc.bridge
    if nc.internal:
        setup_internal_network_rules(rs, br, conf.prefix, nc.icc)
        return
    setup_non_internal_network_rules(rs, family, daemon, nc, conf)
    set_default_forward_rule(rs, br, conf.unprotected)
    rs.append("filter", DOCKER_CT, f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    rs.append("filter", DOCKER_BRIDGE, f"-o {br} -j {DOCKER}")


def set_default_forward_rule(rs: Ruleset, br: str, unprotected: bool) -> None:
    # Normally DROP anything no per-port rule ACCEPTed: remote hosts that route to the
    # container's address must not reach unpublished ports. nat-unprotected ACCEPTs
    # explicitly so the FORWARD policy cannot interfere. Appended: per-port ACCEPTs are
    # inserted above it.
    action = "ACCEPT" if unprotected else "DROP"
    rs.append("filter", DOCKER, f"! -i {br} -o {br} -j {action}")


def setup_non_internal_network_rules(
    rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig, conf: FamConfig
) -> None:
    br = nc.bridge
    if nc.accept_fwmark:
        rs.insert("filter", DOCKER_FORWARD, f"-m mark --mark {_fwmark(nc.accept_fwmark)} -j ACCEPT")

    assert conf.prefix is not None
    if conf.host_ip is not None:
        # The user wants SNAT with the given address.
        to = f"-j SNAT --to-source {conf.host_ip}"
    else:
        # MASQUERADE picks the source address from the next hop's route.
        to = "-j MASQUERADE"
    nat_rule = f"-s {conf.prefix} ! -o {br} {to}"
    hp_nat_rule = f"-o {br} -m addrtype --src-type LOCAL {to}"

    nat = not conf.routed
    if nc.masquerade and nat:
        rs.insert("nat", "POSTROUTING", nat_rule)
    # Without docker-proxy (hairpin), masquerade traffic from the host's own addresses.
    if daemon.hairpin:
        rs.insert("nat", "POSTROUTING", hp_nat_rule)

    set_icc(rs, br, nc.icc, internal=False)

    # Routed networks accept ICMP (errors and ping to the container's address).
    if not nat:
        rs.append("filter", DOCKER, f"-o {br} -p {_icmp(family)} -j ACCEPT")

    # Outgoing packets: with ICC, one rule accepts everything leaving the bridge; without,
    # only what leaves it for another interface (setIcc dropped bridge-to-bridge).
    if nc.icc:
        rs.append("filter", DOCKER_FORWARD, f"-i {br} -j ACCEPT")
    else:
        rs.append("filter", DOCKER_FORWARD, f"-i {br} ! -o {br} -j ACCEPT")


def set_icc(rs: Ruleset, br: str, icc: bool, *, internal: bool) -> None:
    # The ACCEPT is only needed on an --internal network (which has no outgoing rule to
    # let ICC through); elsewhere the outgoing rule covers it.
    if icc and internal:
        rs.append("filter", DOCKER_FORWARD, f"-i {br} -o {br} -j ACCEPT")
    if not icc:
        rs.append("filter", DOCKER_FORWARD, f"-i {br} -o {br} -j DROP")


def setup_internal_network_rules(rs: Ruleset, br: str, prefix: IPNetwork, icc: bool) -> None:
    # Both inserted at the top of DOCKER-INTERNAL, so the outgoing DROP ends up first.
    if prefix.version == 4:
        in_drop = f"! -d {prefix} -i {br} -j DROP"
        out_drop = f"! -s {prefix} -o {br} -j DROP"
    else:
        in_drop = f"! -d {prefix} -i {br} ! -o {br} -j DROP"
        out_drop = f"! -s {prefix} ! -i {br} -o {br} -j DROP"
    rs.insert("filter", DOCKER_INTERNAL, in_drop)
    rs.insert("filter", DOCKER_INTERNAL, out_drop)
    set_icc(rs, br, icc, internal=True)


def _fwmark(val: str) -> str:
    """moby iptablesFwMark (mark[/mask], any Go integer syntax), as iptables-save prints
    it back: hex."""
    mark, _, mask = val.partition("/")
    out = hex(int(mark, 0))
    return f"{out}/{hex(int(mask, 0))}" if mask else out


# --- endpoint.go -----------------------------------------------------------------------

def add_endpoint(rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig, ep: Endpoint) -> None:
    ip = ep.addr4 if family == 4 else ep.addr6
    if ip is None:
        return
    conf = nc.fam(family)
    # filterDirectAccess: drop packets routed straight to the container's address from
    # anywhere but its bridge (the host itself reaches it over the bridge). Not for
    # internal, nat-unprotected or routed networks, nor with --allow-direct-routing.
    if nc.internal or conf.unprotected or conf.routed or daemon.allow_direct_routing:
        return
    for ifname in nc.trusted_host_interfaces:
        rs.append("raw", "PREROUTING", f"-d {_host(ip)} -i {ifname} -j ACCEPT")
    rs.append("raw", "PREROUTING", f"-d {_host(ip)} ! -i {nc.bridge} -j DROP")


# --- port.go ---------------------------------------------------------------------------

def add_port(rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig, pb: PortBinding) -> None:
    """moby setPerPortIptables for one binding (rules for the container address's family)."""
    if pb.container_ip.version != family or nc.internal:
        return
    conf = nc.fam(family)
    filter_port_mapped_on_loopback(rs, daemon, pb)
    if pb.container_ip.version != pb.host_ip.version:
        # Container IPv4 published on a host IPv6 address: docker-proxy's job, no rules.
        return
    set_per_port_nat(rs, family, daemon, nc, pb)
    if not conf.unprotected:
        # Inserted at the top of DOCKER, above the network's DROP (appended earlier).
        rs.insert(
            "filter",
            DOCKER,
            f"-d {_host(pb.container_ip)} ! -i {nc.bridge} -o {nc.bridge} "
            f"{_dport(pb.proto, pb.container_port)} -j ACCEPT",
        )


def set_per_port_nat(rs: Ruleset, family: int, daemon: DaemonConfig, nc: NetworkConfig, pb: PortBinding) -> None:
    if pb.host_port == 0:  # NAT disabled for this binding
        return
    src = "! -s fe80::/10 " if family == 6 else ""  # never DNAT link-local sources
    # 0.0.0.0 / :: means any address: moby passes "0/0", which iptables-save omits.
    dst = "" if pb.host_ip.is_unspecified else f"-d {_host(pb.host_ip)} "
    # With docker-proxy, connections from the bridge to a published port are the proxy's.
    iif = "" if daemon.hairpin else f"! -i {nc.bridge} "
    rs.append(
        "nat",
        DOCKER,
        f"{src}{dst}{iif}{_dport(pb.proto, pb.host_port)} -j DNAT "
        f"--to-destination {_join_host_port(pb.container_ip, pb.container_port)}",
    )
    if daemon.hairpin:
        # A container reaching its own published port: masquerade so replies come back
        # through the host.
        c = _host(pb.container_ip)
        rs.append("nat", "POSTROUTING", f"-s {c} -d {c} {_dport(pb.proto, pb.container_port)} -j MASQUERADE")


def filter_port_mapped_on_loopback(rs: Ruleset, daemon: DaemonConfig, pb: PortBinding) -> None:
    """A port published on 127.0.0.1 must not be reachable from other hosts (which could
    route 127.0.0.1 to this host when route_localnet is on). IPv4 only: ::1 is not routable."""
    if pb.host_port == 0 or not pb.host_ip.is_loopback or pb.host_ip.version != 4:
        return
    if daemon.wsl2_mirrored:
        rs.append("raw", "PREROUTING", f"-d {_host(pb.host_ip)} -i loopback0 {_dport(pb.proto, pb.host_port)} -j ACCEPT")
    rs.append("raw", "PREROUTING", f"-d {_host(pb.host_ip)} ! -i lo {_dport(pb.proto, pb.host_port)} -j DROP")


# --- entry points ----------------------------------------------------------------------

def render(
    daemon: DaemonConfig,
    networks: Iterable[Network] = (),
    family: Family = 4,
    *,
    layout: Literal["29", "20.10"] = "29",
) -> dict[str, list[str]]:
    """What Docker's iptabler leaves in raw/filter/nat for `family` after creating the
    firewaller, then each network, its endpoints and its port bindings, in that order.
    Returns {table: iptables-save lines}; `save_text()` joins them as Docker's goldens."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    if layout == "20.10":
        from nsbox.kits.dockerfw import legacy

        return legacy.render(daemon, networks, family)
    if layout != "29":
        raise ValueError(f"unknown layout {layout!r} (29 or 20.10)")
    rs = Ruleset()
    if not (daemon.ipv4 if family == 4 else daemon.ipv6):
        return rs.tables()
    setup_ip_chains(rs, family, daemon)
    for nc, endpoints, bindings in networks:
        setup_network(rs, family, daemon, nc)
        for ep in endpoints:
            add_endpoint(rs, family, daemon, nc, ep)
        for pb in bindings:
            add_port(rs, family, daemon, nc, pb)
    return rs.tables()


def daemon_rules(tables: dict[str, list[str]], *, forward_drop: bool) -> dict[str, list[str]]:
    """Add what dockerd's other parts add around the iptabler (not in Docker's goldens):

    - `DOCKER-USER` and `-A FORWARD -j DOCKER-USER` above DOCKER-FORWARD (moby
      libnetwork/firewall_linux.go setupUserChain: EnsureJumpRule, so it is FORWARD's first
      rule; since v28.2.2 the chain is empty, no `-j RETURN`);
    - FORWARD policy DROP when dockerd turned on ip_forward itself (`forward_drop`; the
      bridge driver's setupIPv4Forwarding → FilterForwardDrop), ACCEPT when the host
      already forwarded. For ip6tables only when an IPv6 network made dockerd turn on
      IPv6 forwarding. (The nftables backend has no FilterForwardDrop and no DOCKER-USER:
      dockerd then refuses a network while forwarding is off, unless --ip-forward=false.)"""
    rs = Ruleset.parse(tables)
    rs.new_chain("filter", DOCKER_USER)
    rs.ensure_jump("filter", "FORWARD", DOCKER_USER)
    if forward_drop:
        rs.policies[("filter", "FORWARD")] = "DROP"
    return rs.tables(tables)


def forward_drop(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """FORWARD policy DROP: what dockerd (29 and 20.10) sets when it turned on ip_forward
    itself (setupIPForwarding), not when the host already forwarded."""
    rs = Ruleset.parse(tables)
    rs.policies[("filter", "FORWARD")] = "DROP"
    return rs.tables(tables)
