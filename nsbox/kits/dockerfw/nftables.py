"""Docker 29's nftables rules for bridge networks (moby's `nftabler`), as `nft list` text.

A port of moby b985e2313a `daemon/libnetwork/drivers/bridge/internal/nftabler/`
(`nftabler.go` init, `network.go`, `endpoint.go`, `port.go`) and of the bookkeeping of
`daemon/libnetwork/internal/nftables` that decides the order nft lists things in:

- each `Apply` writes its new chains (and maps) in name order (Go's text/template ranges
  over a map by sorted key), and the kernel lists objects in creation order, so chains
  appear sorted within the daemon-level batch, then within each network's batch;
- a chain's rules are kept in numbered groups, lowest group first, insertion order inside
  a group; every Apply flushes and rewrites the chains it touches.

Rules are spelt as `nft list table` prints them (`counter packets 0 bytes 0`, quoted
interface names and comments, `127.0.0.0/8`), so the output compares line for line with
`nft list table ip|ip6 docker-bridges` after dockerd ran. Pure: no kernel, no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from nsbox.kits.dockerfw.config import DaemonConfig, Endpoint, IPAddress, Network, NetworkConfig, PortBinding

Family = Literal[4, 6]
TABLE = "docker-bridges"

FORWARD_CHAIN = "filter-FORWARD"
POSTROUTING_CHAIN = "nat-POSTROUTING"
PREROUTING_CHAIN = "nat-PREROUTING"
OUTPUT_CHAIN = "nat-OUTPUT"
NAT_CHAIN = "nat-prerouting-and-output"
RAW_PREROUTING_CHAIN = "raw-PREROUTING"
FILT_FWD_IN_VMAP = "filter-forward-in-jumps"
FILT_FWD_OUT_VMAP = "filter-forward-out-jumps"
NAT_POSTROUTING_OUT_VMAP = "nat-postrouting-out-jumps"
NAT_POSTROUTING_IN_VMAP = "nat-postrouting-in-jumps"

# moby's rule groups (nftabler.go).
INITIAL = 0
FWD_IN_ACCEPT_FWMARK = 1
FWD_IN_LEGACY_LINKS = 2
FWD_IN_ICC = 3
FWD_IN_PORTS = 4
FWD_IN_FINAL = 5
RAW_PREROUTING_PORTS = 1

COUNTER = "counter packets 0 bytes 0"


@dataclass
class Chain:
    base: str | None = None  # "type filter hook forward priority filter; policy accept;"
    groups: dict[int, list[str]] = field(default_factory=dict)

    def rules(self) -> list[str]:
        return [r for g in sorted(self.groups) for r in self.groups[g]]


@dataclass
class Table:
    """One `docker-bridges` table as the kernel holds it (objects in creation order)."""

    family: Family
    maps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "ip" if self.family == 4 else "ip6"

    def apply(self, batch: "Batch") -> None:
        """moby Table.Apply: new maps, then new chains, each in name order."""
        for name in sorted(batch.maps):
            self.maps.setdefault(name, [])
        for name in sorted(batch.chains):
            self.chains.setdefault(name, Chain(base=batch.chains[name]))
        for map_name, key, value in batch.elements:
            self.maps[map_name].append((key, value))
        for chain, group, rule, ignore_exist in batch.rules:
            rules = self.chains[chain].groups.setdefault(group, [])
            if rule in rules:
                if ignore_exist:
                    continue
                raise ValueError(f"adding rule {rule!r} chain {chain!r} group {group}: rule exists")
            rules.append(rule)

    def text(self) -> str:
        blocks: list[str] = []
        for name, elements in self.maps.items():
            lines = [f"\tmap {name} {{", "\t\ttype ifname : verdict"]
            if elements:
                # nft puts one element per line, continuation lines aligned under the first.
                items = [f'"{k}" : {v}' for k, v in sorted(elements, key=lambda e: ifname_order(e[0]))]
                lines.append("\t\telements = { " + ",\n\t\t\t     ".join(items) + " }")
            lines.append("\t}")
            blocks.append("\n".join(lines))
        for name, chain in self.chains.items():
            lines = [f"\tchain {name} {{"]
            if chain.base:
                lines.append(f"\t\t{chain.base}")
            lines += [f"\t\t{r}" for r in chain.rules()]
            lines.append("\t}")
            blocks.append("\n".join(lines))
        return f"table {self.name} {TABLE} {{\n" + "\n\n".join(blocks) + "\n}\n"


@dataclass
class Batch:
    """moby nftables.Modifier: the objects one Apply creates."""

    maps: set[str] = field(default_factory=set)
    chains: dict[str, str | None] = field(default_factory=dict)
    elements: list[tuple[str, str, str]] = field(default_factory=list)
    rules: list[tuple[str, int, str, bool]] = field(default_factory=list)

    def rule(self, chain: str, group: int, text: str, *, ignore_exist: bool = False) -> None:
        self.rules.append((chain, group, text, ignore_exist))


def ifname_order(name: str) -> bytes:
    """nft lists a set's elements sorted by value, an ifname being a 16-byte (IFNAMSIZ)
    zero-padded string compared as a host-order (little-endian) integer: so by the last
    bytes first ("b" < "c" < "a1" < "br-b" < "docker0"). Checked against nft 1.0.6."""
    return name.encode().ljust(16, b"\0")[::-1]


def _ip(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def _q(s: str) -> str:
    return f'"{s}"'


# --- nftabler.go init ------------------------------------------------------------------

def init_table(family: Family, daemon: DaemonConfig) -> Table:
    """The daemon-level table (the `cleaned` golden)."""
    t = Table(family)
    b = Batch()
    # The forward base chain only holds two verdict-map jumps: packets entering a bridge go
    # to that network's ingress chain, packets leaving it to its egress chain, so traffic
    # that is not Docker's traverses no per-network rules.
    b.chains[FORWARD_CHAIN] = "type filter hook forward priority filter; policy accept;"
    b.maps |= {FILT_FWD_IN_VMAP, FILT_FWD_OUT_VMAP, NAT_POSTROUTING_OUT_VMAP, NAT_POSTROUTING_IN_VMAP}
    b.rule(FORWARD_CHAIN, INITIAL, f"oifname vmap @{FILT_FWD_IN_VMAP}")
    b.rule(FORWARD_CHAIN, INITIAL, f"iifname vmap @{FILT_FWD_OUT_VMAP}")
    b.chains[POSTROUTING_CHAIN] = "type nat hook postrouting priority srcnat; policy accept;"
    b.rule(POSTROUTING_CHAIN, INITIAL, f"iifname vmap @{NAT_POSTROUTING_OUT_VMAP}")
    b.rule(POSTROUTING_CHAIN, INITIAL, f"oifname vmap @{NAT_POSTROUTING_IN_VMAP}")
    b.chains[NAT_CHAIN] = None
    b.chains[PREROUTING_CHAIN] = "type nat hook prerouting priority dstnat; policy accept;"
    b.rule(PREROUTING_CHAIN, INITIAL, f"fib daddr type local {COUNTER} jump {NAT_CHAIN}")
    b.chains[OUTPUT_CHAIN] = "type nat hook output priority dstnat; policy accept;"
    # With docker-proxy, connections to the host's loopback address are the proxy's.
    skip_lo = ""
    if not daemon.hairpin:
        skip_lo = "ip daddr != 127.0.0.0/8 " if family == 4 else "ip6 daddr != ::1 "
    b.rule(OUTPUT_CHAIN, INITIAL, f"{skip_lo}fib daddr type local {COUNTER} jump {NAT_CHAIN}")
    b.chains[RAW_PREROUTING_CHAIN] = "type filter hook prerouting priority raw; policy accept;"
    if not daemon.hairpin and daemon.wsl2_mirrored and family == 4:
        # WSL2 mirrored mode: Windows reaches Linux's 127.0.0.1 via loopback0 and those
        # packets hit nat-PREROUTING; leave them to docker-proxy (wsl2.go).
        b.rule(NAT_CHAIN, INITIAL, f'iifname "loopback0" ip daddr 127.0.0.0/8 {COUNTER} return')
    t.apply(b)
    return t


# --- network.go ------------------------------------------------------------------------

def chain_filter_fwd_in(br: str) -> str:
    return "filter-forward-in__" + br


def chain_filter_fwd_out(br: str) -> str:
    return "filter-forward-out__" + br


def chain_nat_post_rt_out(br: str) -> str:
    return "nat-postrouting-out__" + br


def chain_nat_post_rt_in(br: str) -> str:
    return "nat-postrouting-in__" + br


def add_network(t: Table, daemon: DaemonConfig, nc: NetworkConfig) -> None:
    conf = nc.fam(t.family)
    if conf.prefix is None:
        return
    br = nc.bridge
    fwd_in, fwd_out = chain_filter_fwd_in(br), chain_filter_fwd_out(br)
    post_in, post_out = chain_nat_post_rt_in(br), chain_nat_post_rt_out(br)
    b = Batch()
    for chain in (fwd_in, fwd_out, post_in, post_out):
        b.chains[chain] = None
    b.elements += [
        (FILT_FWD_IN_VMAP, br, f"jump {fwd_in}"),
        (FILT_FWD_OUT_VMAP, br, f"jump {fwd_out}"),
        (NAT_POSTROUTING_IN_VMAP, br, f"jump {post_in}"),
        (NAT_POSTROUTING_OUT_VMAP, br, f"jump {post_out}"),
    ]
    b.rule(fwd_in, INITIAL, f"ct state established,related {COUNTER} accept")
    b.rule(fwd_out, INITIAL, f"ct state established,related {COUNTER} accept")
    icc_verdict = "accept" if nc.icc else "drop"

    if nc.internal:
        # Drop anything that is not from / to this network.
        b.rule(fwd_in, INITIAL, f'iifname != {_q(br)} {COUNTER} drop comment "INTERNAL NETWORK INGRESS"')
        b.rule(fwd_out, INITIAL, f'oifname != {_q(br)} {COUNTER} drop comment "INTERNAL NETWORK EGRESS"')
        b.rule(fwd_in, FWD_IN_ICC, f'{COUNTER} {icc_verdict} comment "ICC"')
    else:
        if nc.accept_fwmark:
            b.rule(fwd_in, FWD_IN_ACCEPT_FWMARK, f'meta mark {_fwmark(nc.accept_fwmark)} {COUNTER} accept comment "ALLOW FW MARK"')
        b.rule(fwd_in, FWD_IN_ICC, f'iifname {_q(br)} {COUNTER} {icc_verdict} comment "ICC"')
        b.rule(fwd_out, INITIAL, f'{COUNTER} accept comment "OUTGOING"')
        # Incoming: drop what no per-port rule accepted, unless nat-unprotected.
        if conf.unprotected:
            b.rule(fwd_in, FWD_IN_FINAL, f'{COUNTER} accept comment "UNPROTECTED"')
        else:
            b.rule(fwd_in, FWD_IN_FINAL, f'{COUNTER} drop comment "UNPUBLISHED PORT DROP"')
        if conf.routed:
            icmp = "ip protocol icmp" if t.family == 4 else "meta l4proto ipv6-icmp"
            b.rule(fwd_in, INITIAL, f'{icmp} {COUNTER} accept comment "ICMP"')
        # Masquerade picks a source address from the next hop; SNAT uses HostIP.
        verdict, comment = "masquerade", "MASQUERADE"
        if conf.host_ip is not None:
            verdict, comment = f"snat to {conf.host_ip}", "SNAT"
        if nc.masquerade and not conf.routed:
            b.rule(post_out, INITIAL, f'oifname != {_q(br)} {_ip(t.family)} saddr {conf.prefix} {COUNTER} {verdict} comment "{comment}"')
        if daemon.hairpin:
            b.rule(post_in, INITIAL, f'fib saddr type local {COUNTER} {verdict} comment "{comment} FROM HOST"')
    t.apply(b)


def _fwmark(val: str) -> str:
    """moby nftFwMark, as nft prints it back (hex, 8 digits)."""
    mark, _, mask = val.partition("/")
    if mask:
        return f"& 0x{int(mask, 0):08x} == 0x{int(mark, 0):08x}"
    return f"0x{int(mark, 0):08x}"


# --- endpoint.go -----------------------------------------------------------------------

def add_endpoint(t: Table, daemon: DaemonConfig, nc: NetworkConfig, ep: Endpoint) -> None:
    ip = ep.addr4 if t.family == 4 else ep.addr6
    if ip is None:
        return
    conf = nc.fam(t.family)
    # filterDirectAccess: drop packets routed straight to the container's address from
    # anywhere but its bridge (and trusted interfaces); the host reaches it over the bridge.
    if nc.internal or conf.unprotected or conf.routed or daemon.allow_direct_routing:
        return
    # moby writes `iifname != { br, trusted... }`; nft lists a one-element set as the bare
    # value and a longer one sorted (ifname_order).
    ifnames = sorted({nc.bridge, *nc.trusted_host_interfaces}, key=ifname_order)
    iif = _q(nc.bridge) if len(ifnames) == 1 else "{ " + ", ".join(_q(i) for i in ifnames) + " }"
    b = Batch()
    b.rule(RAW_PREROUTING_CHAIN, RAW_PREROUTING_PORTS,
           f'{_ip(t.family)} daddr {ip} iifname != {iif} {COUNTER} drop comment "DROP DIRECT ACCESS"')
    t.apply(b)


# --- port.go ---------------------------------------------------------------------------

def _join_host_port(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def add_ports(t: Table, daemon: DaemonConfig, nc: NetworkConfig, pbs: Sequence[PortBinding]) -> None:
    """moby modPorts / setPerPortRules for the bindings whose container address is of this
    table's family: forwarding, DNAT, hairpin masquerade, loopback filter, in that order."""
    if nc.internal or nc.fam(t.family).prefix is None:
        return
    pbs = [pb for pb in pbs if pb.container_ip.version == t.family]
    fam = _ip(t.family)
    br = nc.bridge
    b = Batch()
    if not nc.fam(t.family).unprotected:
        for pb in pbs:
            # Several host ports mapped to one container port give the same rule: ignored.
            b.rule(chain_filter_fwd_in(br), FWD_IN_PORTS,
                   f"{fam} daddr {pb.container_ip} {pb.proto} dport {pb.container_port} {COUNTER} accept",
                   ignore_exist=True)
    # DNAT. With docker-proxy, connections from the bridge are the proxy's; link-local
    # IPv6 sources are never DNATed.
    proxy_skip = "" if daemon.hairpin else f"iifname != {_q(br)} "
    v6_ll_skip = "ip6 saddr != fe80::/10 " if t.family == 6 else ""
    for pb in pbs:
        if pb.host_port == 0 or pb.host_ip.version != pb.container_ip.version:
            continue  # NAT disabled, or host IPv6 → container IPv4 (docker-proxy's job)
        daddr = "" if pb.host_ip.is_unspecified else f"{fam} daddr {pb.host_ip} "
        b.rule(NAT_CHAIN, INITIAL,
               f"{proxy_skip}{v6_ll_skip}{daddr}{pb.proto} dport {pb.host_port} {COUNTER} "
               f'dnat to {_join_host_port(pb.container_ip, pb.container_port)} comment "DNAT"')
    # Without docker-proxy a container reaching its own published port is masqueraded.
    if daemon.hairpin:
        for pb in pbs:
            if pb.host_port == 0 or pb.host_ip.version != pb.container_ip.version:
                continue
            c = pb.container_ip
            b.rule(chain_nat_post_rt_in(br), INITIAL,
                   f"{fam} saddr {c} {fam} daddr {c} {pb.proto} dport {pb.container_port} {COUNTER} "
                   f'masquerade comment "MASQ TO OWN PORT"')
    # Ports published on 127.0.0.1 are dropped from anywhere but lo (IPv4 only: ::1 is
    # not routable).
    if t.family == 4:
        for pb in pbs:
            if pb.host_port == 0 or not pb.host_ip.is_loopback or pb.host_ip.version != 4:
                continue
            if daemon.wsl2_mirrored:
                b.rule(RAW_PREROUTING_CHAIN, RAW_PREROUTING_PORTS,
                       f'iifname "loopback0" ip daddr {pb.host_ip} {pb.proto} dport {pb.host_port} {COUNTER} '
                       f'accept comment "ACCEPT WSL2 LOOPBACK"')
            b.rule(RAW_PREROUTING_CHAIN, RAW_PREROUTING_PORTS,
                   f'iifname != "lo" ip daddr {pb.host_ip} {pb.proto} dport {pb.host_port} {COUNTER} '
                   f'drop comment "DROP REMOTE LOOPBACK"')
    t.apply(b)


# --- entry point -----------------------------------------------------------------------

# nft before 1.0.7 or so refuses the symbolic `dstnat` priority on a nat *output* hook
# ("invalid priority expression value in this context") and lists it as -100; moby's own
# nftabler test replaces one with the other for the same reason.
_OUTPUT_PRIORITY = ("type nat hook output priority dstnat", "type nat hook output priority -100")


def loadable(text: str) -> str:
    """`render()` text as `nft -f` input any nft accepts (-100 is dstnat's value)."""
    return text.replace(*_OUTPUT_PRIORITY)


def listed(text: str) -> str:
    """`nft list` output with the numeric output-hook priority spelt as newer nft prints it
    (moby nftabler_test.go's only normalisation)."""
    return text.replace(_OUTPUT_PRIORITY[1], _OUTPUT_PRIORITY[0])


def render(daemon: DaemonConfig, networks: Iterable[Network] = (), family: Family = 4) -> str:
    """`nft list table ip|ip6 docker-bridges` after Docker's nftabler created its table, then
    each network, its endpoints and its port bindings. "" when the family is disabled
    (dockerd creates no table then)."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    if not (daemon.ipv4 if family == 4 else daemon.ipv6):
        return ""
    t = init_table(family, daemon)
    for nc, endpoints, bindings in networks:
        add_network(t, daemon, nc)
        for ep in endpoints:
            add_endpoint(t, daemon, nc, ep)
        add_ports(t, daemon, nc, bindings)
    return t.text()
