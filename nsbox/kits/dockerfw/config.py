"""What dockerd knows when it programs a bridge network's firewall.

Field names follow moby's `firewaller.Config` / `firewaller.NetworkConfig` /
`firewaller.NetworkConfigFam` and `types.PortBinding` (in snake case), so a reader can map
each one back to moby's code. Frozen dataclasses: the renderers are pure functions of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
GatewayMode = Literal["nat", "nat-unprotected", "routed", "isolated"]
GATEWAY_MODES: tuple[str, ...] = ("nat", "nat-unprotected", "routed", "isolated")


@dataclass(frozen=True)
class DaemonConfig:
    """moby `firewaller.Config`: daemon-wide settings.

    `userland_proxy` is dockerd's `--userland-proxy`; moby's firewaller calls its negation
    `Hairpin` (no docker-proxy, so the kernel must hairpin and masquerade from the host)."""

    userland_proxy: bool = True
    ipv4: bool = True
    ipv6: bool = True  # --ip6tables defaults to true since Docker 27
    allow_direct_routing: bool = False  # --allow-direct-routing
    wsl2_mirrored: bool = False

    @property
    def hairpin(self) -> bool:
        return not self.userland_proxy


@dataclass(frozen=True)
class NetworkConfig:
    """moby `firewaller.NetworkConfig` plus the two `NetworkConfigFam`s, flattened.

    `ipv4`/`ipv6` are the bridge subnets (`Config4.Prefix`/`Config6.Prefix`); `host_ipv4`/
    `host_ipv6` are `com.docker.network.host_ipv4/6` (`Config*.HostIP`: SNAT instead of
    MASQUERADE); `gateway_mode_ipv4/ipv6` are `com.docker.network.bridge.gateway_mode_ipv4/6`
    (moby turns them into `Config*.Routed` / `Config*.Unprotected`)."""

    bridge: str  # IfName
    ipv4: IPNetwork | None = None
    ipv6: IPNetwork | None = None
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    host_ipv4: IPAddress | None = None
    host_ipv6: IPAddress | None = None
    gateway_mode_ipv4: GatewayMode = "nat"
    gateway_mode_ipv6: GatewayMode = "nat"
    trusted_host_interfaces: tuple[str, ...] = ()
    accept_fwmark: str = ""

    def __post_init__(self) -> None:
        for mode in (self.gateway_mode_ipv4, self.gateway_mode_ipv6):
            if mode not in GATEWAY_MODES:
                raise ValueError(f"unknown gateway mode {mode!r} (one of {', '.join(GATEWAY_MODES)})")
        if self.ipv4 is not None and self.ipv4.version != 4:
            raise ValueError(f"ipv4 subnet {self.ipv4} is not IPv4")
        if self.ipv6 is not None and self.ipv6.version != 6:
            raise ValueError(f"ipv6 subnet {self.ipv6} is not IPv6")

    def fam(self, family: int) -> "FamConfig":
        """moby `NetworkConfigFam` for one address family."""
        if family == 4:
            return FamConfig(self.ipv4, self.host_ipv4, self.gateway_mode_ipv4)
        return FamConfig(self.ipv6, self.host_ipv6, self.gateway_mode_ipv6)


@dataclass(frozen=True)
class FamConfig:
    prefix: IPNetwork | None
    host_ip: IPAddress | None
    gateway_mode: GatewayMode

    @property
    def routed(self) -> bool:
        # moby gwMode.routed(): only "routed". "isolated" gives the firewaller the same
        # config as "nat" (bridge_linux.go); it isolates by giving the bridge no gateway
        # address, which is not a firewall rule.
        return self.gateway_mode == "routed"

    @property
    def unprotected(self) -> bool:
        return self.gateway_mode == "nat-unprotected"


@dataclass(frozen=True)
class Endpoint:
    """A container's addresses on the network (`AddEndpoint(epIPv4, epIPv6)`)."""

    addr4: IPAddress | None = None
    addr6: IPAddress | None = None


@dataclass(frozen=True)
class PortBinding:
    """moby `types.PortBinding`: `IP` is the container's address (`container_ip`), `HostIP`
    the address the port is published on (0.0.0.0 / :: for all). One binding per host
    port: the firewallers use `HostPort` only (dockerd's port mapper expands a range into
    single bindings), so `host_port_end` is informational. `host_port=0`: no NAT (routed
    networks' bindings)."""

    proto: str
    host_ip: IPAddress
    host_port: int
    container_ip: IPAddress
    container_port: int
    host_port_end: int = 0

    def __post_init__(self) -> None:
        if self.proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"unknown protocol {self.proto!r} (tcp, udp or sctp)")


# One network as the renderers take it: its config, its containers, their published ports.
Network = tuple[NetworkConfig, Sequence[Endpoint], Sequence[PortBinding]]


def addr(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)

