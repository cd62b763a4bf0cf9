"""A Docker host as builder steps: the daemon, `docker network create`, `docker run`.

    d = Daemon(lab, lab.host)                        # dockerd starts: sysctls, chain skeleton
    net = d.default_bridge()                         # docker0 172.17.0.1/16
    c1 = d.run("c1", net, publish=["8080:80"])       # netns, veth, address, route, rules

Every kernel object is made with the model's own builder steps (node.bridge,
lab.veth, node.address, ...). Every iptables rule comes from nsbox.kits.dockerfw, the
port of moby's firewallers (checked against all of Docker 29's goldens): the daemon
replays dockerd's events on it (daemon start, network create, endpoint join, port
publish), with moby's insert/append semantics, on one Ruleset per family, and copies
each changed chain into the host's Firewall model. A rule lives in one place.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from nsbox.errors import ValidationError
from nsbox.kits.dockerfw import config as fw
from nsbox.kits.dockerfw import iptables as fw4
from nsbox.kits.dockerfw import legacy as fw2010
from nsbox.kits.dockerfw import nftables as fwnft
from nsbox.model import Lab, Node, save
from nsbox.model.firewall import BUILTIN_CHAINS
from nsbox.model.rules import Rule, parse_rule

GatewayMode = Literal["nat", "nat-unprotected", "routed", "isolated"]
GATEWAY_MODES = fw.GATEWAY_MODES
LAYOUTS = ("29", "29-nftables", "20.10")

DEFAULT_SUBNET = "172.17.0.0/16"
DEFAULT_MAC = "b2:7c:4e:1a:9d:30"  # random in Docker (locally administered, unicast); fixed here
DEFAULT_MAC_2010 = "02:42:5e:ed:17:01"  # 20.10: random too, but always 02:42:xx:xx:xx:xx
# What the runtime sets in every container with a netns of its own (moby oci_linux.go,
# 20.10 and 29 alike): ping sockets for every group, every port bindable unprivileged.
CONTAINER_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"}
# Docker's docs (daemon.json "fixed-cidr-v6") show this prefix for the default bridge.
DEFAULT_SUBNET6 = "2001:db8:1::/64"
_BR_NF = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
_RANGE = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<h0>\d{1,5})-(?P<h1>\d{1,5}):(?P<c0>\d{1,5})-(?P<c1>\d{1,5})"
                    r"(?:/(?P<proto>tcp|udp))?$")
_PUBLISH = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d{1,5}):(?P<ctr>\d{1,5})(?:/(?P<proto>tcp|udp))?$")


@dataclass(frozen=True)
class DaemonOptions:
    layout: str = "29"
    ipv6: bool = False             # --ipv6: the default bridge gets an IPv6 subnet
    userland_proxy: bool = True    # --userland-proxy
    iptables: bool = True          # --iptables
    ip6tables: bool = True         # --ip6tables (default true since Docker 27; off in 20.10)
    docker_user: bool = True       # DOCKER-USER and its jump (added by another part of dockerd)
    host_forwarding: bool = False  # the host forwarded already: dockerd leaves FORWARD's policy alone

    def forward_drop(self, family: int) -> bool:
        """dockerd sets FORWARD's policy to DROP when it turned forwarding on itself:
        for IPv4 always (here), for IPv6 when an IPv6 network made it turn it on."""
        if self.host_forwarding:
            return False
        return family == 4 or self.ipv6


@dataclass(frozen=True)
class Port:
    """`-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`; no HOST_IP: 0.0.0.0 and ::."""

    proto: str
    host_port: int
    container_port: int
    host_ip: str | None = None

    @classmethod
    def parse(cls, text: str) -> Port:
        m = _PUBLISH.match(text)
        if not m or not (0 < int(m["host"]) < 65536 and 0 < int(m["ctr"]) < 65536):
            raise ValidationError(f"bad -p {text!r}: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")
        ip = m["ip"].strip("[]") if m["ip"] else None
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValidationError(f"bad -p {text!r}: {ip!r} is no address") from None
        return cls(m["proto"] or "tcp", int(m["host"]), int(m["ctr"]), ip)

    @classmethod
    def parse_all(cls, text: str) -> list[Port]:
        """`-p` with ranges (`8080-8081:80-81`) as dockerd expands them: one binding per port,
        host and container ranges of one length."""
        m = _RANGE.match(text)
        if not m:
            return [cls.parse(text)]
        h0, h1, c0, c1 = (int(m[k]) for k in ("h0", "h1", "c0", "c1"))
        if h1 < h0 or c1 < c0 or h1 - h0 != c1 - c0:
            raise ValidationError(f"bad -p {text!r}: the host and container ranges must have one length")
        prefix = f"{m['ip']}:" if m["ip"] else ""
        suffix = f"/{m['proto']}" if m["proto"] else ""
        return [cls.parse(f"{prefix}{h0 + i}:{c0 + i}{suffix}") for i in range(h1 - h0 + 1)]

    def host_ip_of(self, family: int) -> str | None:
        if self.host_ip is None:
            return "0.0.0.0" if family == 4 else "::"
        return self.host_ip if (":" in self.host_ip) == (family == 6) else None


@dataclass
class Endpoint:
    """A container's interface on a network."""

    name: str
    node: Node
    ip: str
    ip6: str | None
    veth: str
    ports: list[Port] = field(default_factory=list)

    def ip_of(self, family: int) -> str | None:
        return self.ip if family == 4 else self.ip6


@dataclass
class Network:
    """A bridge network (`docker network create -d bridge`)."""

    name: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    gateway_mode: GatewayMode = "nat"
    subnet6: str | None = None
    gateway6: str | None = None
    host_ipv4: str | None = None   # com.docker.network.host_ipv4: SNAT instead of MASQUERADE
    host_ipv6: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    firewall: fw.NetworkConfig | None = None  # what dockerd's firewaller knows of it
    _next: int = 0                 # IPAM: offset of the next address handed out
    _next6: int = 0

    def subnet_of(self, family: int) -> str | None:
        return self.subnet if family == 4 else self.subnet6

    def snat_of(self, family: int) -> str | None:
        return self.host_ipv4 if family == 4 else self.host_ipv6

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def allocate(self, family: int) -> str:
        """Docker's IPAM: the next free address after the gateway, in order."""
        net = ipaddress.ip_network(self.subnet_of(family))
        gw = ipaddress.ip_address(self.gateway if family == 4 else self.gateway6)
        while True:
            if family == 4:
                self._next += 1
                addr = net.network_address + self._next
            else:
                self._next6 += 1
                addr = net.network_address + self._next6
            if addr not in net or (family == 4 and addr == net.broadcast_address):
                raise ValidationError(f"network {self.name}: no address left in {net}")
            if addr != gw:
                return str(addr)


def running_in_user_ns() -> bool:
    """moby's userns.RunningInUserNS: /proc/self/uid_map is not the initial namespace's
    `0 0 4294967295`."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def sort_port_map_2010(ports: list[Port]) -> list[Port]:
    """dockerd 20.10 orders a container's bindings with go-connections' nat.SortPortMap
    before libnetwork writes their rules: larger host port first, then larger container
    port, tcp before udp (so `-p 8080-8081:80-81` writes 8081 before 8080). Its Less is
    no strict order (`hpi > hpj || pi > pj || (pi == pj && tcp)`), so the result is what
    Go's sort does with it: insertion sort for up to 12 entries, replayed here; then the
    entries grouped by container port in the order the ports first appear."""
    def less(a: Port, b: Port) -> bool:
        return a.host_port > b.host_port or a.container_port > b.container_port or \
            (a.container_port == b.container_port and a.proto == "tcp")

    s = list(ports)
    for i in range(1, len(s)):
        j = i
        while j > 0 and less(s[j], s[j - 1]):
            s[j], s[j - 1] = s[j - 1], s[j]
            j -= 1
    order: dict[tuple[int, str], list[Port]] = {}
    for p in s:
        order.setdefault((p.container_port, p.proto), []).append(p)
    return [p for group in order.values() for p in group]


def veth_name(i: int) -> str:
    """Host ends are `veth` + 7 hex digits in Docker (random there, stable here)."""
    return f"veth{(0x5eed000 + i * 0x9e37) & 0xfffffff:07x}"


class Daemon:
    """dockerd on HOST. Its constructor is the daemon starting: forwarding on, and the
    daemon-level chain skeleton (moby's `cleaned` golden, plus DOCKER-USER and FORWARD's
    policy). The daemon owns HOST's raw, filter and nat tables in both families."""

    def __init__(self, lab: Lab, host: Node, *, layout: str = "29", ipv6: bool = False,
                 userland_proxy: bool = True, iptables: bool = True, ip6tables: bool | None = None,
                 docker_user: bool = True, host_forwarding: bool = False, port_mappers: bool = True,
                 br_netfilter: bool | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValidationError(f"unknown Docker layout {layout!r} (known: {', '.join(LAYOUTS)})")
        if ip6tables is None:
            # --ip6tables: on by default since Docker 27; experimental and off in 20.10.
            ip6tables = layout != "20.10"
        self.lab, self.host = lab, host
        # port_mappers=False: bindings reach the firewaller as given, as moby's iptabler and
        # nftabler unit tests (Docker's goldens) call it; the daemon itself runs each binding
        # through a port mapper first (routed: the host port dropped).
        self._port_mappers = port_mappers
        self.opts = DaemonOptions(layout, ipv6, userland_proxy, iptables, ip6tables, docker_user, host_forwarding)
        self.fw = fw.DaemonConfig(userland_proxy=userland_proxy, ipv4=iptables, ipv6=iptables and ip6tables)
        self.networks: dict[str, Network] = {}
        self._endpoints = 0
        self._others: list[str] = []  # --network none containers: nodes on no network
        self._aliases: dict[str, tuple[str, ...]] = {}  # docker run --network-alias
        # One moby-style ruleset per family, and what of it the model holds already.
        self._rs: dict[int, fw4.Ruleset] = {f: fw4.Ruleset() for f in (4, 6)}
        self._synced: dict[tuple[int, str, str], list[str]] = {}
        self._parsed: dict[str, Rule] = {}
        # 29-nftables: one `docker-bridges` table per family, and its index in the host's
        # nftables rulesets (rewritten after each event: nft -f loads it in one go).
        self._nft: dict[int, tuple[fwnft.Table, int]] = {}
        host.sysctl("net.ipv4.ip_forward", 1)
        if ipv6:
            lab.require("ipv6")
            host.sysctl("net.ipv6.conf.all.forwarding", 1)
        # br_netfilter (bridge-nf-call-ip{,6}tables: do bridged frames, container to
        # container on one bridge, see iptables?). dockerd 20.10 modprobes br_netfilter at
        # start whenever --iptables/--ip6tables is on (the module's default: 1), and sets
        # the key again only for icc=false networks. Docker 28+ (moby db25b0dc, "Only
        # enable bridge netfiltering when needed") loads it only when a network needs it
        # (icc=false, or --userland-proxy=false: network_create), so a stock Debian/Ubuntu
        # host (module unloaded) has bridged traffic skip iptables. BR_NETFILTER overrides
        # the host's value before dockerd needs it: True, the module loaded by something
        # else (a Kubernetes node, the kernel building it in); False, unloaded (or the
        # admin's sysctl.d turned the keys off). Kernels that build it in (this
        # project's) turn it on in every new netns (per-netns keys since Linux 5.3), so
        # the value is always set explicitly; optional: where the kernel has no
        # br_netfilter the keys are absent, which behaves as 0 (and as dockerd does when
        # its modprobe fails, it goes on).
        if br_netfilter is None:
            br_netfilter = layout == "20.10" and iptables
        self.br_netfilter = br_netfilter
        for key in _BR_NF:
            host.sysctl(key, int(br_netfilter), optional=True)
        # Tables in the order a host shows them being made (raw first: Docker 28+ uses it).
        if iptables and layout == "29":
            host.iptables("raw")
        if layout == "29-nftables":
            # --firewall-backend=nftables: no iptables rules, no DOCKER-USER, no FORWARD
            # policy (dockerd refuses a network unless the host forwards already).
            lab.require("nftables")
            for family in self._families():
                self._nft[family] = (fwnft.init_table(family, self.fw), len(host.firewall.nft))
                host.firewall.nftables("# placeholder")  # replaced by _sync_nft
                self._sync_nft(family)
            return
        for family in self._families():
            rs = self._rs[family]
            if layout == "29":
                fw4.setup_ip_chains(rs, family, self.fw)
                if docker_user:  # another part of dockerd adds it (fw4.daemon_rules)
                    rs.new_chain("filter", fw4.DOCKER_USER)
                    rs.ensure_jump("filter", "FORWARD", fw4.DOCKER_USER)
            else:
                fw2010.setup_ip_chains(rs)
                if family == 4:
                    fw2010.arrange_user_filter_rule(rs)
            if self.opts.forward_drop(family):
                rs.policies[("filter", "FORWARD")] = "DROP"
            self._sync(family)

    def _families(self) -> list[int]:
        out = [4] if self.opts.iptables else []
        if self.opts.ip6tables and self.opts.iptables:
            out.append(6)
        return out

    # ---------------------------------------------------------------- networks

    def default_bridge(self, *, subnet: str = DEFAULT_SUBNET, mac: str = DEFAULT_MAC,
                       subnet6: str | None = None) -> Network:
        """The network `bridge` (docker0) dockerd makes at start; with --ipv6 it gets
        --fixed-cidr-v6 (SUBNET6, Docker's docs' prefix by default)."""
        if self.opts.ipv6 and subnet6 is None:
            subnet6 = DEFAULT_SUBNET6
        return self.network_create("bridge", subnet=subnet, bridge="docker0", mac=mac, ipv6_subnet=subnet6)

    def network_create(self, name: str, *, subnet: str, gateway: str | None = None, bridge: str | None = None,
                       internal: bool = False, icc: bool = True, masquerade: bool = True,
                       gateway_mode: GatewayMode = "nat", ipv6_subnet: str | None = None,
                       ipv6_gateway: str | None = None, host_ipv4: str | None = None,
                       host_ipv6: str | None = None, mac: str | None = None) -> Network:
        """`docker network create [--internal] [--subnet S --gateway G] [--ipv6 --subnet S6]
        -o com.docker.network.bridge.name=BRIDGE -o ...enable_icc=ICC -o ...enable_ip_masquerade=M
        -o ...gateway_mode_ipv4=MODE NAME`: the bridge with its gateway address, accept_ra=0,
        and the network's rules."""
        if name in self.networks:
            raise ValidationError(f"docker network {name} exists already")
        if gateway_mode not in GATEWAY_MODES:
            raise ValidationError(f"network {name}: gateway_mode must be one of {', '.join(GATEWAY_MODES)}")
        try:
            net4 = ipaddress.IPv4Network(subnet)
            net6 = ipaddress.IPv6Network(ipv6_subnet) if ipv6_subnet else None
        except ValueError as e:
            raise ValidationError(f"network {name}: bad subnet: {e}") from None
        gateway = gateway or str(net4.network_address + 1)
        if net6 is not None:
            ipv6_gateway = ipv6_gateway or str(net6.network_address + 1)
        if self.opts.layout == "20.10" and gateway_mode != "nat":
            raise ValidationError(f"network {name}: Docker 20.10 has no gateway modes (only nat)")
        try:
            h4 = ipaddress.IPv4Address(host_ipv4) if host_ipv4 else None
            h6 = ipaddress.IPv6Address(host_ipv6) if host_ipv6 else None
        except ValueError as e:
            raise ValidationError(f"network {name}: bad host IP: {e}") from None
        net = Network(name, bridge or f"br-{name}"[:15], str(net4), gateway, internal, icc, masquerade,
                      gateway_mode, str(net6) if net6 else None, ipv6_gateway, host_ipv4, host_ipv6)
        net.firewall = fw.NetworkConfig(net.bridge, ipv4=net4, ipv6=net6, internal=internal, icc=icc,
                                  masquerade=masquerade, host_ipv4=h4, host_ipv6=h6,
                                  gateway_mode_ipv4=gateway_mode, gateway_mode_ipv6=gateway_mode)
        h = self.host
        # dockerd gives the bridge a random MAC at creation, so the gateway MAC containers
        # hold in their ARP caches stays put as ports come and go.
        # gateway_mode isolated: the bridge gets no gateway address (moby isolates the
        # network that way, not by a rule): containers have no way off the bridge.
        isolated = gateway_mode == "isolated"
        if self.opts.layout == "20.10" and mac == DEFAULT_MAC:
            mac = DEFAULT_MAC_2010
        # txqueuelen 0: libnetwork's netlink.Bridge has TxQLen 0, which netlink sends.
        h.bridge(net.bridge, None if isolated else f"{gateway}/{net4.prefixlen}", mac=mac, txqueuelen=0)
        h.sysctl(f"net.ipv6.conf.{net.bridge}.accept_ra", 0, optional=True)
        if net6 is not None and not isolated:
            self.lab.require("ipv6")
            # moby adds the bridge's IPv6 address with IFA_F_NODAD: so does the model by
            # default (Address.dad=False), never tentative.
            h.address(net.bridge, f"{ipv6_gateway}/{net6.prefixlen}")
        # dockerd's enableBrNfCallIptables: the DROP between containers of one bridge
        # (icc=false) and, since Docker 28, hairpin NAT (--userland-proxy=false) need
        # bridged frames to see iptables. 20.10 does it for icc=false only (its
        # `{!config.EnableICC && d.config.EnableIPTables, setupBridgeNetFiltering}`).
        needs = not icc or (not self.opts.userland_proxy and self.opts.layout != "20.10")
        if needs and self.opts.iptables:
            # Not optional then: without br_netfilter those rules would silently not apply.
            for key in _BR_NF[:1] + (_BR_NF[1:] if net6 is not None else ()):
                h.sysctl(key, 1)
                h.optional_sysctls.discard(key)
        if not self.opts.userland_proxy:
            # setupLoopbackAddressesRouting: DNAT'd host-loopback traffic may leave by the bridge.
            h.sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet", 1)
        self.networks[name] = net
        for family in self._families():
            rs = self._rs[family]
            if family in self._nft:
                fwnft.add_network(self._nft[family][0], self.fw, net.firewall)
                self._sync_nft(family)
                continue
            if self.opts.layout == "29":
                fw4.setup_network(rs, family, self.fw, net.firewall)
            else:
                prefix = net4 if family == 4 else net6
                if prefix is not None:
                    fw2010.setup_ip_tables(rs, family, self.fw, net.firewall, prefix)
                if not internal:
                    fw2010.set_inc(rs, net.bridge)
                if family == 4:
                    fw2010.arrange_user_filter_rule(rs)
            self._sync(family)
        return net

    # ---------------------------------------------------------------- containers

    def run(self, name: str, network: Network | str | None = None, *, publish: list[str] | tuple[str, ...] = (),
            ip: str | None = None, ip6: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
        """`docker run --network NETWORK [--ip IP] [-p ...] --name NAME`: the container's netns,
        a veth pair (host end `veth…` with txqueuelen 0 on the bridge, eth0 inside), its
        addresses and default routes, the rules for it and its ports. Returns its node.

        NETWORK "none": a netns with lo alone (the node); "host": a container in the host's
        own netns; "container:OTHER": a container in OTHER's netns (a ContainerHandle, with
        .serve() for its own servers). Neither of these gets a rule or a link."""
        if isinstance(network, str):
            return self._run_mode(name, network, publish)
        net = network or self.networks.get("bridge")
        if net is None:
            raise ValidationError(f"docker run {name}: no network given and no default bridge")
        ports = [port for p in publish for port in Port.parse_all(p)]
        if self.opts.layout == "20.10":
            ports = sort_port_map_2010(ports)
        self._endpoints += 1
        veth = veth_name(self._endpoints)
        addr = ip or net.allocate(4)
        c = self.lab.node(name)
        self.lab.veth(c, "eth0", self.host, veth, b_master=net.bridge)
        # libnetwork creates the veth with TxQLen 0, which netlink gives the peer too (both
        # ends: 0); without the userland proxy the port hairpins, so a container reaches
        # its own published port through the host.
        self.host.set_link(veth, txqueuelen=0, hairpin=True if not self.opts.userland_proxy else None)
        c.set_link("eth0", txqueuelen=0, mac=self.container_mac(net, name, addr))
        for key, value in CONTAINER_SYSCTLS.items():
            # moby sets each where the kernel has it (optional), and ping_group_range only
            # outside a user namespace (`!userns.RunningInUserNS()`): nsbox's sandbox is
            # one (root alone mapped), where the kernel refuses the range with EINVAL.
            if key == "net.ipv4.ping_group_range" and running_in_user_ns():
                continue
            c.sysctl(key, value, optional=True)
        if net.subnet6 is None:
            # IPv4-only network: Docker >= 26.0.2 turns IPv6 off on eth0 (osl setIPv6). The
            # real dockerd 20.10 (Debian's docker.io, seen in a container here) leaves it
            # off everywhere: all, default, lo and eth0 read 1.
            keys = ("all", "default", "lo", "eth0") if self.opts.layout == "20.10" else ("eth0",)
            for k in keys:
                c.sysctl(f"net.ipv6.conf.{k}.disable_ipv6", 1, optional=True)
        c.address("eth0", f"{addr}/{net.prefixlen}")
        addr6 = None
        if net.subnet6 is not None:
            addr6 = ip6 or net.allocate(6)
            c.address("eth0", f"{addr6}/{ipaddress.ip_network(net.subnet6).prefixlen}")
        if not net.internal and net.gateway_mode != "isolated":
            c.route("default", via=net.gateway)
            if net.gateway6:
                c.route("::/0", via=net.gateway6)
        ep = Endpoint(name, c, addr, addr6, veth, ports)
        self._aliases[name] = tuple(aliases)
        # Routed gateway mode: moby's `routed` port mapper drops the host port (no DNAT,
        # no docker-proxy); the port is reached at the container's own address.
        nat_ports = [] if net.gateway_mode == "routed" else ports
        if not self.opts.userland_proxy:
            self._declare_published(nat_ports)
        if self.opts.userland_proxy:
            for port in nat_ports:
                # docker-proxy answers for the published port on the host (loopback and
                # hairpin traffic, which DNAT does not take). One per port: Docker runs a
                # second one for IPv6, which one netns cannot hold beside it in nsbox's
                # model (the wildcard binds collide), so the IPv4 one stands for both.
                # A port on an IPv6 host address of an IPv4-only container: docker-proxy
                # relays it to the container's IPv4 address (no rule does).
                # 20.10's docker-proxy answers UDP from the address the route picks.
                legacy = port.proto == "udp" and self.opts.layout == "20.10"
                v4 = port.host_ip_of(4)
                if v4 is not None:
                    self.host.proxy(port.proto, port.host_port, addr, port.container_port, host_ip=v4,  # type: ignore[arg-type]
                                    udp_reply_from_route=legacy)
                else:
                    self.host.proxy(port.proto, port.host_port, addr6 or addr, port.container_port,  # type: ignore[arg-type]
                                    host_ip=port.host_ip_of(6) or "::", udp_reply_from_route=legacy)
        net.endpoints.append(ep)
        fw_ep = fw.Endpoint(ipaddress.IPv4Address(addr), ipaddress.IPv6Address(addr6) if addr6 else None)
        for family in self._families():
            rs = self._rs[family]
            if family in self._nft:
                table = self._nft[family][0]
                fwnft.add_endpoint(table, self.fw, net.firewall, fw_ep)
                # Each family's table takes the bindings of both (moby's nftabler skips the others).
                fwnft.add_ports(table, self.fw, net.firewall, self._bindings(ep, 4) + self._bindings(ep, 6))
                self._sync_nft(family)
                continue
            if self.opts.layout == "29":
                fw4.add_endpoint(rs, family, self.fw, net.firewall, fw_ep)
            for pb in self._bindings(ep, family):
                if self.opts.layout == "29":
                    fw4.add_port(rs, family, self.fw, net.firewall, pb)
                elif not net.internal:
                    fw2010.forward(rs, self.fw, net.firewall, pb)
            self._sync(family)
        return c

    def container_mac(self, net: Network, name: str, addr: str) -> str:
        """eth0's MAC: 20.10 derives it from the IPv4 address (netutils.GenerateMACFromIP:
        02:42 and the address's four bytes, 02:42:ac:11:00:02 for 172.17.0.2); Docker 28+
        gives it a random locally administered unicast one (moby bc130f36), stable here:
        from a hash of the network's and the container's names."""
        if self.opts.layout == "20.10":
            return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(addr).packed)
        import hashlib

        h = bytearray(hashlib.sha256(f"{net.name}/{name}".encode()).digest()[:6])
        h[0] = (h[0] & 0xFE) | 0x02
        return ":".join(f"{b:02x}" for b in h)

    def embedded_dns(self, upstream: str | None = None) -> dict[str, str]:
        """dockerd's embedded DNS in every container on a user-defined network (the default
        bridge has none): a resolver in the container's netns on 127.0.0.11 at a UDP and a
        TCP port of its own (a `dockerd` process, nsbox/verify/proxy.py -dns-local), the
        container's nat rules that send :53 there and back (dockerfw.resolver, or its
        nftables table under 29-nftables), and A records for the names and aliases of the
        containers on the same network (a DNS server on 127.0.0.11 the resolver asks
        first). Call it once, after the last `run`. Other names are forwarded, from the
        container's netns, to UPSTREAM:53 (the host's resolver from its resolv.conf: give
        one of the lab's, e.g. a DNS server in `internet`); when it is silent 20.10 sends
        nothing and 28+ SERVFAIL. Without UPSTREAM they get NXDOMAIN (the real dockerd
        would fall back to public resolvers, which a lab must not reach). Returns
        container -> the container holding its DNS server."""
        from nsbox.kits.dockerfw import resolver

        made: dict[str, str] = {}
        for net in self.networks.values():
            if net.name == "bridge":
                continue
            records = {}
            for ep in net.endpoints:
                for n in (ep.name, *self._aliases.get(ep.name, ())):
                    records[n] = ep.ip
            for i, ep in enumerate(net.endpoints):
                udp, tcp = 40000 + 2 * len(made), 40001 + 2 * len(made)
                zone = 41000 + len(made)  # the names the resolver knows, asked over UDP
                dns = self.lab.container(f"{ep.name}-dns", ep.node)
                dns.serve_dns(zone, records, address=resolver.RESOLVER_IP)
                for proto, port in (("udp", udp), ("tcp", tcp)):
                    ep.node.proxy(proto, port, upstream or "0.0.0.0", resolver.DNS_PORT,  # type: ignore[arg-type]
                                  host_ip=resolver.RESOLVER_IP, name="dockerd", dns_local=zone,
                                  dns_servfail=self.opts.layout != "20.10")
                if self.opts.layout == "29-nftables":
                    self.lab.require("nftables")
                    ep.node.nftables(fwnft.loadable(resolver.nftables_rules(udp, tcp)))
                else:
                    nat = ep.node.iptables("nat")
                    for ln in save.lines(resolver.iptables_rules(udp, tcp)["nat"], table="nat"):
                        if ln.kind == "chain":
                            if ln.chain not in BUILTIN_CHAINS["nat"] and ln.chain not in nat.chains:
                                nat.new_chain(ln.chain)
                        elif ln.kind == "rule":
                            nat.append(ln.chain, ln.spec)
                self.lab.virtual(resolver.RESOLVER_IP, proto="udp", port=resolver.DNS_PORT, node=ep.node,
                                 name=f"{ep.name}'s embedded DNS")
                made[ep.name] = dns.name
        return made

    def machine(self, name: str = "docker-host") -> None:
        """Group the host and every container netns made so far as one machine (NAME)."""
        nodes = [self.host.name] + [ep.node.name for net in self.networks.values() for ep in net.endpoints]
        nodes += [n for n in self._others if n not in nodes]
        self.lab.machine(name, nodes)

    def _run_mode(self, name: str, mode: str, publish: list[str] | tuple[str, ...]) -> Any:
        if publish:
            # dockerd: "published ports are discarded when using host network mode"; with
            # none or container: it refuses ("conflicting options: port publishing and the
            # container type network mode")
            raise ValidationError(f"docker run {name} --network {mode}: -p has no meaning in this mode")
        if mode == "none":
            self._others.append(name)
            return self.lab.node(name)
        if mode == "host":
            return self.lab.container(name, self.host)
        if mode.startswith("container:"):
            return self.lab.container(name, mode.split(":", 1)[1])
        if mode in self.networks:
            return self.run(name, self.networks[mode])
        raise ValidationError(f"docker run {name}: unknown network {mode!r} (none, host, container:NAME "
                              f"or one of {', '.join(self.networks)})")

    def _bindings(self, ep: Endpoint, family: int) -> list[fw.PortBinding]:
        """dockerd's port bindings of EP in FAMILY: `-p 8080:80` binds 0.0.0.0 and ::, each
        to the container's address of that family. On a network whose gateway mode for
        FAMILY is `routed`, moby's `routed` port mapper ignores the host port ("Host port
        ignored, because NAT is disabled"): HostPort 0, so the firewaller opens the
        container's port and writes no DNAT."""
        net = next((n for n in self.networks.values() if ep in n.endpoints), None)
        routed = self._port_mappers and net is not None and net.firewall is not None and \
            net.firewall.fam(family).routed
        out = []
        for port in ep.ports:
            host_ip, ctr_ip = port.host_ip_of(family), ep.ip_of(family)
            if host_ip is not None and ctr_ip is not None:
                out.append(fw.PortBinding(port.proto, ipaddress.ip_address(host_ip), 0 if routed else port.host_port,
                                          ipaddress.ip_address(ctr_ip), port.container_port))
        return out

    def _declare_published(self, ports: list[Port]) -> None:
        """Without the proxy nothing listens on a published port: DNAT answers for it. Each
        address the host has now (loopback included: OUTPUT DNAT plus route_localnet) is
        declared a virtual port, so probes may target it and answered_by says who served."""
        from nsbox.model.lab import Virtual

        for port in ports:
            for family in (4, 6):
                bind = port.host_ip_of(family)
                if bind is None:
                    continue
                local = [a.ip for a in self.host.addresses if (":" in a.ip) == (family == 6)]
                if family == 4:
                    local.append("127.0.0.1")  # Docker DNATs host loopback only for IPv4
                for ip in local:
                    if bind not in ("0.0.0.0", "::") and ip != bind:
                        continue
                    if Virtual(ip, port.proto, port.host_port, self.host.name, None) not in self.lab.virtuals:
                        self.lab.virtual(ip, proto=port.proto, port=port.host_port, node=self.host)

    def docker_user(self, spec: str, family: int = 4) -> Daemon:
        """`iptables -I DOCKER-USER SPEC`: the admin's own filter rule, where Docker's docs put
        it (dockerd never touches DOCKER-USER's rules). The daemon owns the host's raw, filter
        and nat tables: a rule written there directly is overwritten when dockerd rewrites the
        chain, as on a real host."""
        if self.opts.layout == "29-nftables" or not self.opts.docker_user or family not in self._families():
            raise ValidationError(f"DOCKER-USER: no such chain for IPv{family} with this daemon "
                                  f"(layout {self.opts.layout}, iptables/ip6tables and docker_user on)")
        rs = self._rs[family]
        parse_rule(spec)  # refuse a bad rule here, with the rule's own message
        rs.insert("filter", fw4.DOCKER_USER, spec)
        self._sync(family)
        return self

    def endpoint(self, name: str) -> Endpoint:
        for net in self.networks.values():
            for ep in net.endpoints:
                if ep.name == name:
                    return ep
        raise ValidationError(f"no container {name} on any docker network")

    # ---------------------------------------------------------------- rules

    def _sync(self, family: int) -> None:
        """Copy what changed in FAMILY's ruleset into the host's Firewall model: new user
        chains (by name, as iptables-save lists them), policies, and each chain whose rules
        differ from what was copied last (rules parsed once each: 1,000 containers add one
        raw rule each, and the other chains stay as they were)."""
        rs = self._rs[family]
        for tname in ("raw", "filter", "nat", "mangle"):
            chains = rs.chains[tname]
            policies = {c: p for (t, c), p in rs.policies.items() if t == tname}
            user = sorted(c for c in chains if c not in BUILTIN_CHAINS[tname])
            if not user and not policies and not any(chains.values()) and \
                    tname not in self.host.firewall.family(family):
                continue
            table = self.host.firewall.table(tname, family)
            for c in user:
                if c not in table.chains:
                    table.new_chain(c)
            for c, p in policies.items():
                if table.chains[c].policy != p:
                    table.policy(c, p)
            for c, rules in chains.items():
                key = (family, tname, c)
                if self._synced.get(key, []) != rules:
                    table.chains[c].rules = [self._rule(r) for r in rules]
                    self._synced[key] = list(rules)

    def nft_text(self, family: int) -> str:
        """The `docker-bridges` table of FAMILY as `nft list table` prints it (29-nftables)."""
        return self._nft[family][0].text()

    def _sync_nft(self, family: int) -> None:
        table, index = self._nft[family]
        self.host.firewall.nft[index] = fwnft.loadable(table.text())

    def _rule(self, spec: str) -> Rule:
        rule = self._parsed.get(spec)
        if rule is None:
            rule = self._parsed[spec] = parse_rule(spec)
        return rule
