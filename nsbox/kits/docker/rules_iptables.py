"""The iptables rules dockerd writes, one function per event, per layout.

dockerd does not write a rule set in one go: it adds chains when it starts, rules
when a network is created, when a container joins it and when a port is published,
some appended (`-A`) and some inserted at the head of their chain (`-I`). The
order `iptables-save` shows is the result of those events in that order, so the
kit replays the same events with the same `-A`/`-I`: the rules then come out in
Docker's order whatever the number of networks, containers and ports.

Each function returns a list of `Op`s for one address family; `Daemon` applies
them to the host's Firewall. Layouts:

- "29": Docker 29 with the iptables backend (moby's iptabler): DOCKER-FORWARD,
  DOCKER-CT, DOCKER-BRIDGE, DOCKER-INTERNAL, DOCKER; raw-table DROP per endpoint.
  Checked line for line against moby's own goldens (tests/test_unit_kits_docker.py).
- "20.10": the book's dockerd (Debian 12's docker.io): DOCKER-ISOLATION-STAGE-1/2,
  `DOCKER-USER -j RETURN`, nat `-i docker0 -j RETURN`, no raw table, no ip6tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nsbox.kits.docker.daemon import DaemonOptions, Endpoint, Network, Port

LAYOUTS = ("29", "20.10")


@dataclass(frozen=True)
class Op:
    """One `iptables` command: `-N CHAIN`, `-P CHAIN POLICY`, `-A CHAIN SPEC` or
    `-I CHAIN SPEC` (inserted at the head, as dockerd's Insert does)."""

    table: str
    verb: Literal["N", "P", "A", "I"]
    chain: str
    arg: str = ""


def _loopback(family: int) -> str:
    return "127.0.0.0/8" if family == 4 else "::1/128"


def _host(ip: str, family: int) -> str:
    return f"{ip}/32" if family == 4 else f"{ip}/128"


def _dest(ip: str, port: int, family: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


# ---------------------------------------------------------------- Docker 29


def daemon_29(opts: DaemonOptions, family: int) -> list[Op]:
    """dockerd starting: the chain skeleton and its jumps (the `cleaned` golden),
    plus DOCKER-USER (another part of dockerd adds it) and FORWARD's policy DROP
    when dockerd turned forwarding on itself."""
    ops: list[Op] = []
    if opts.forward_drop(family):
        ops.append(Op("filter", "P", "FORWARD", "DROP"))
    chains = ["DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL"]
    if opts.docker_user:
        chains.append("DOCKER-USER")
    ops += [Op("filter", "N", c) for c in chains]
    if opts.docker_user:
        ops.append(Op("filter", "A", "FORWARD", "-j DOCKER-USER"))
    ops.append(Op("filter", "A", "FORWARD", "-j DOCKER-FORWARD"))
    ops += [Op("filter", "A", "DOCKER-FORWARD", f"-j {c}") for c in ("DOCKER-CT", "DOCKER-INTERNAL", "DOCKER-BRIDGE")]
    ops.append(Op("nat", "N", "DOCKER"))
    ops.append(Op("nat", "A", "PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER"))
    # With the userland proxy, host loopback traffic goes to docker-proxy, not DNAT.
    out = "-m addrtype --dst-type LOCAL -j DOCKER"
    ops.append(Op("nat", "A", "OUTPUT", out if not opts.userland_proxy else f"! -d {_loopback(family)} {out}"))
    return ops


def network_29(opts: DaemonOptions, net: Network, family: int) -> list[Op]:
    """`docker network create` (and the default bridge at daemon start)."""
    br = net.bridge
    subnet = net.subnet_of(family)
    ops: list[Op] = []
    if net.internal:
        # Inserted as a pair at the head of DOCKER-INTERNAL (newest network first).
        if family == 4:
            pair = [f"! -s {subnet} -o {br} -j DROP", f"! -d {subnet} -i {br} -j DROP"]
        else:
            pair = [f"! -s {subnet} ! -i {br} -o {br} -j DROP", f"! -d {subnet} -i {br} ! -o {br} -j DROP"]
        ops += [Op("filter", "I", "DOCKER-INTERNAL", r) for r in reversed(pair)]
        ops.append(Op("filter", "A", "DOCKER-FORWARD", f"-i {br} -o {br} -j {'ACCEPT' if net.icc else 'DROP'}"))
        return ops
    if net.gateway_mode == "routed":
        icmp = "icmp" if family == 4 else "ipv6-icmp"
        ops.append(Op("filter", "I", "DOCKER", f"-o {br} -p {icmp} -j ACCEPT"))
    unprotected = net.gateway_mode == "nat-unprotected"
    ops.append(Op("filter", "A", "DOCKER", f"! -i {br} -o {br} -j {'ACCEPT' if unprotected else 'DROP'}"))
    ops.append(Op("filter", "A", "DOCKER-BRIDGE", f"-o {br} -j DOCKER"))
    ops.append(Op("filter", "A", "DOCKER-CT", f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"))
    if net.icc:
        ops.append(Op("filter", "A", "DOCKER-FORWARD", f"-i {br} -j ACCEPT"))
    else:
        ops.append(Op("filter", "A", "DOCKER-FORWARD", f"-i {br} -o {br} -j DROP"))
        ops.append(Op("filter", "A", "DOCKER-FORWARD", f"-i {br} ! -o {br} -j ACCEPT"))
    if net.masquerade and net.gateway_mode != "routed":
        snat = net.snat_of(family)
        target = f"SNAT --to-source {snat}" if snat else "MASQUERADE"
        ops.append(Op("nat", "I", "POSTROUTING", f"-s {subnet} ! -o {br} -j {target}"))
    if not opts.userland_proxy:
        # Hairpin NAT for the host's own addresses (inserted after, so it comes first).
        # SNAT to the network's host IP when it has one, as for outgoing traffic.
        snat = net.snat_of(family)
        target = f"SNAT --to-source {snat}" if snat else "MASQUERADE"
        ops.append(Op("nat", "I", "POSTROUTING", f"-o {br} -m addrtype --src-type LOCAL -j {target}"))
    return ops


def endpoint_29(opts: DaemonOptions, net: Network, ep: Endpoint, family: int) -> list[Op]:
    """A container joins NET: Docker 28+ drops packets for it that did not come in
    on its bridge (direct routing from a neighbour), in the raw table."""
    ip = ep.ip_of(family)
    if ip is None or net.internal or net.gateway_mode in ("routed", "nat-unprotected"):
        return []
    return [Op("raw", "A", "PREROUTING", f"-d {_host(ip, family)} ! -i {net.bridge} -j DROP")]


def port_29(opts: DaemonOptions, net: Network, ep: Endpoint, port: Port, family: int) -> list[Op]:
    """`-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`."""
    ip = ep.ip_of(family)
    host_ip = port.host_ip_of(family)
    if ip is None or host_ip is None or net.internal:
        return []
    br, p = net.bridge, port.proto
    ops: list[Op] = []
    loopback = host_ip in ("127.0.0.1", "::1")
    if loopback and family == 4:
        # Nothing but the host itself may reach a port published on 127.0.0.1.
        ops.append(Op("raw", "A", "PREROUTING", f"-d {host_ip}/32 ! -i lo -p {p} -m {p} --dport {port.host_port} -j DROP"))
    if net.gateway_mode != "nat-unprotected":
        ops.append(Op("filter", "I", "DOCKER",
                      f"-d {_host(ip, family)} ! -i {br} -o {br} -p {p} -m {p} --dport {port.container_port} -j ACCEPT"))
    if not opts.userland_proxy:
        ops.append(Op("nat", "A", "POSTROUTING", f"-s {_host(ip, family)} -d {_host(ip, family)} -p {p} -m {p} "
                                                 f"--dport {port.container_port} -j MASQUERADE"))
    sel = "! -s fe80::/10 " if family == 6 else ""
    if host_ip not in ("0.0.0.0", "::"):
        sel += f"-d {_host(host_ip, family)} "
    if opts.userland_proxy:
        sel += f"! -i {br} "
    ops.append(Op("nat", "A", "DOCKER", f"{sel}-p {p} -m {p} --dport {port.host_port} "
                                        f"-j DNAT --to-destination {_dest(ip, port.container_port, family)}"))
    return ops


# ---------------------------------------------------------------- Docker 20.10


def daemon_2010(opts: DaemonOptions, family: int) -> list[Op]:
    """dockerd 20.10 starting (real-systems/, tests/data/realdocker/daemon.host.rules);
    it writes no ip6tables rules at all without --ipv6 --ip6tables."""
    if family == 6:
        return []
    ops: list[Op] = []
    if opts.forward_drop(family):
        ops.append(Op("filter", "P", "FORWARD", "DROP"))
    ops += [Op("filter", "N", c) for c in ("DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER")]
    ops.append(Op("filter", "A", "FORWARD", "-j DOCKER-USER"))
    ops.append(Op("filter", "A", "FORWARD", "-j DOCKER-ISOLATION-STAGE-1"))
    ops.append(Op("filter", "A", "DOCKER-ISOLATION-STAGE-1", "-j RETURN"))
    ops.append(Op("filter", "A", "DOCKER-ISOLATION-STAGE-2", "-j RETURN"))
    ops.append(Op("filter", "A", "DOCKER-USER", "-j RETURN"))
    ops.append(Op("nat", "N", "DOCKER"))
    ops.append(Op("nat", "A", "PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER"))
    out = "-m addrtype --dst-type LOCAL -j DOCKER"
    ops.append(Op("nat", "A", "OUTPUT", out if not opts.userland_proxy else f"! -d 127.0.0.0/8 {out}"))
    return ops


def network_2010(opts: DaemonOptions, net: Network, family: int) -> list[Op]:
    if family == 6:
        return []
    br, subnet = net.bridge, net.subnet
    ops: list[Op] = []
    if net.masquerade and not net.internal:
        ops.append(Op("nat", "I", "POSTROUTING", f"-s {subnet} ! -o {br} -j MASQUERADE"))
        ops.append(Op("nat", "I", "DOCKER", f"-i {br} -j RETURN"))
    if net.internal:
        ops.append(Op("filter", "I", "DOCKER-ISOLATION-STAGE-1", f"! -d {subnet} -i {br} -j DROP"))
        ops.append(Op("filter", "I", "DOCKER-ISOLATION-STAGE-1", f"! -s {subnet} -o {br} -j DROP"))
    else:
        # Inserted after FORWARD's DOCKER-USER and ISOLATION jumps, newest network first.
        ops.append(Op("filter", "I", "DOCKER-ISOLATION-STAGE-1", f"-i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"))
        ops.append(Op("filter", "I", "DOCKER-ISOLATION-STAGE-2", f"-o {br} -j DROP"))
        ops.append(Op("filter", "A", "FORWARD", f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"))
        ops.append(Op("filter", "A", "FORWARD", f"-o {br} -j DOCKER"))
        ops.append(Op("filter", "A", "FORWARD", f"-i {br} ! -o {br} -j ACCEPT"))
    ops.append(Op("filter", "A", "FORWARD", f"-i {br} -o {br} -j {'ACCEPT' if net.icc else 'DROP'}"))
    if not opts.userland_proxy and not net.internal:
        ops.append(Op("nat", "I", "POSTROUTING", f"-o {br} -m addrtype --src-type LOCAL -j MASQUERADE"))
    return ops


def endpoint_2010(opts: DaemonOptions, net: Network, ep: Endpoint, family: int) -> list[Op]:
    return []  # no raw table before Docker 28


def port_2010(opts: DaemonOptions, net: Network, ep: Endpoint, port: Port, family: int) -> list[Op]:
    ip = ep.ip_of(family)
    host_ip = port.host_ip_of(family)
    if family == 6 or ip is None or host_ip is None or net.internal:
        return []
    br, p = net.bridge, port.proto
    ops = [Op("filter", "A", "DOCKER", f"-d {ip}/32 ! -i {br} -o {br} -p {p} -m {p} --dport {port.container_port} -j ACCEPT"),
           Op("nat", "A", "POSTROUTING", f"-s {ip}/32 -d {ip}/32 -p {p} -m {p} --dport {port.container_port} -j MASQUERADE")]
    sel = "" if host_ip == "0.0.0.0" else f"-d {host_ip}/32 "
    if opts.userland_proxy:
        sel += f"! -i {br} "
    ops.append(Op("nat", "A", "DOCKER", f"{sel}-p {p} -m {p} --dport {port.host_port} -j DNAT --to-destination {ip}:{port.container_port}"))
    return ops


RULES = {
    "29": (daemon_29, network_29, endpoint_29, port_29),
    "20.10": (daemon_2010, network_2010, endpoint_2010, port_2010),
}
