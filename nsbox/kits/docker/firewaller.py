"""dockerd's firewallers: one implementation per layout, behind one interface.

moby keeps the bridge driver's rules behind a `firewaller` interface
(daemon/libnetwork/drivers/bridge/internal/firewaller: `NewNetwork` ->
`AddEndpoint`, `AddPorts`, ...), with the `iptabler` and the `nftabler` as
its implementations. The daemon here does the same: it calls a Firewaller at
each dockerd event (start, network create, endpoint join with its port
bindings, DOCKER-USER, the embedded resolver's rules) and never asks which
layout it is. The layouts:

    29            Iptabler      moby's iptabler (Docker 29, iptables-nft or legacy)
    29-nftables   Nftabler      moby's nftabler (--firewall-backend=nftables)
    20.10         Iptabler2010  libnetwork 20.10's iptables code

The rules themselves come from nsbox.kits.dockerfw (checked against Docker's
goldens); a firewaller replays the events on them and copies what changed into
the host's Firewall model, through the model's own methods.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable, Protocol

from nsbox.errors import ValidationError
from nsbox.kits.dockerfw import config as fw
from nsbox.kits.dockerfw import iptables as fw4
from nsbox.kits.dockerfw import legacy as fw2010
from nsbox.kits.dockerfw import nftables as fwnft
from nsbox.model.firewall import BUILTIN_CHAINS
from nsbox.model.rules import Rule, parse_rule

if TYPE_CHECKING:
    from nsbox.kits.docker.daemon import DaemonOptions, Network
    from nsbox.model import Lab, Node

# A network's port bindings in one family (the daemon's port mappers applied).
Bindings = Callable[[int], "list[fw.PortBinding]"]


class Firewaller(Protocol):
    """What dockerd's bridge driver asks of its firewall, event by event."""

    def start(self) -> None:
        """The daemon starts: its chain skeleton (and FORWARD's policy where it sets one)."""

    def new_network(self, net: Network) -> None:
        """`docker network create`: the network's rules (net.firewall says what it is)."""

    def add_endpoint(self, net: Network, ep: fw.Endpoint, bindings: Bindings) -> None:
        """A container joins NET at EP, with its port bindings per family."""

    def docker_user(self, spec: str, family: int) -> None:
        """`iptables -I DOCKER-USER SPEC`; ValidationError where there is no DOCKER-USER."""

    def resolver(self, node: Node, udp: int, tcp: int) -> None:
        """The embedded DNS resolver's rules in a container's netns (127.0.0.11:53 sent to
        the resolver's UDP and TCP ports)."""


class _Xtables:
    """What the iptables firewallers share: one moby-style Ruleset per family, and each
    changed chain copied into the host's Firewall model (parsed once per rule text)."""

    layout = ""

    def __init__(self, lab: Lab, host: Node, opts: DaemonOptions, config: fw.DaemonConfig,
                 families: list[int]) -> None:
        self.lab, self.host, self.opts, self.fw, self.families = lab, host, opts, config, families
        self.rulesets: dict[int, fw4.Ruleset] = {f: fw4.Ruleset() for f in (4, 6)}
        self._synced: dict[tuple[int, str, str], list[str]] = {}
        self._parsed: dict[str, Rule] = {}

    def docker_user(self, spec: str, family: int) -> None:
        if not self.opts.docker_user or family not in self.families:
            raise ValidationError(f"DOCKER-USER: no such chain for IPv{family} with this daemon "
                                  f"(layout {self.layout}, iptables/ip6tables and docker_user on)")
        parse_rule(spec)  # refuse a bad rule here, with the rule's own message
        self.rulesets[family].insert("filter", fw4.DOCKER_USER, spec)
        self.sync(family)

    def resolver(self, node: Node, udp: int, tcp: int) -> None:
        from nsbox.kits.dockerfw import resolver

        from nsbox.model import save

        nat = node.iptables("nat")
        for ln in save.lines(resolver.iptables_rules(udp, tcp)["nat"], table="nat"):
            if ln.kind == "chain":
                if ln.chain not in BUILTIN_CHAINS["nat"] and ln.chain not in nat.chains:
                    nat.new_chain(ln.chain)
            elif ln.kind == "rule":
                nat.append(ln.chain, ln.spec)

    def _forward_policy(self, family: int) -> None:
        if self.opts.forward_drop(family):
            self.rulesets[family].policies[("filter", "FORWARD")] = "DROP"

    def sync(self, family: int) -> None:
        """Copy what changed in FAMILY's ruleset into the host's Firewall model: new user
        chains (by name, as iptables-save lists them), policies, and each chain whose rules
        differ from what was copied last (rules parsed once each: 1,000 containers add one
        raw rule each, and the other chains stay as they were)."""
        rs = self.rulesets[family]
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

    def _rule(self, spec: str) -> Rule:
        rule = self._parsed.get(spec)
        if rule is None:
            rule = self._parsed[spec] = parse_rule(spec)
        return rule


class Iptabler(_Xtables):
    """Docker 29's iptabler (moby internal/firewaller/iptabler)."""

    layout = "29"

    def start(self) -> None:
        if self.families:  # tables in the order a host shows them made: raw first (Docker 28+)
            self.host.iptables("raw")
        for family in self.families:
            rs = self.rulesets[family]
            fw4.setup_ip_chains(rs, family, self.fw)
            if self.opts.docker_user:  # another part of dockerd adds it (fw4.daemon_rules)
                rs.new_chain("filter", fw4.DOCKER_USER)
                rs.ensure_jump("filter", "FORWARD", fw4.DOCKER_USER)
            self._forward_policy(family)
            self.sync(family)

    def new_network(self, net: Network) -> None:
        assert net.firewall is not None
        for family in self.families:
            fw4.setup_network(self.rulesets[family], family, self.fw, net.firewall)
            self.sync(family)

    def add_endpoint(self, net: Network, ep: fw.Endpoint, bindings: Bindings) -> None:
        for family in self.families:
            rs = self.rulesets[family]
            fw4.add_endpoint(rs, family, self.fw, net.firewall, ep)
            for pb in bindings(family):
                fw4.add_port(rs, family, self.fw, net.firewall, pb)
            self.sync(family)


class Iptabler2010(_Xtables):
    """libnetwork 20.10's iptables code (no raw table, DOCKER-USER arranged at each event)."""

    layout = "20.10"

    def start(self) -> None:
        for family in self.families:
            rs = self.rulesets[family]
            fw2010.setup_ip_chains(rs)
            if family == 4:
                fw2010.arrange_user_filter_rule(rs)
            self._forward_policy(family)
            self.sync(family)

    def new_network(self, net: Network) -> None:
        nc = net.firewall
        assert nc is not None
        for family in self.families:
            rs = self.rulesets[family]
            prefix = nc.ipv4 if family == 4 else nc.ipv6
            if prefix is not None:
                fw2010.setup_ip_tables(rs, family, self.fw, nc, prefix)
            if not net.internal:
                fw2010.set_inc(rs, net.bridge)
            if family == 4:
                fw2010.arrange_user_filter_rule(rs)
            self.sync(family)

    def add_endpoint(self, net: Network, ep: fw.Endpoint, bindings: Bindings) -> None:
        for family in self.families:
            rs = self.rulesets[family]
            for pb in bindings(family):
                if not net.internal:
                    fw2010.forward(rs, self.fw, net.firewall, pb)
            self.sync(family)


class Nftabler:
    """Docker 29's nftabler (--firewall-backend=nftables): one `docker-bridges` table per
    family, loaded with `nft -f` in one go; no iptables rules, no DOCKER-USER, no FORWARD
    policy (dockerd refuses a network unless the host forwards already)."""

    layout = "29-nftables"

    def __init__(self, lab: Lab, host: Node, opts: DaemonOptions, config: fw.DaemonConfig,
                 families: list[int]) -> None:
        self.lab, self.host, self.opts, self.fw, self.families = lab, host, opts, config, families
        self.tables: dict[int, fwnft.Table] = {}
        self._loaded: dict[int, str] = {}  # the text of each table in the host's model now

    def start(self) -> None:
        self.lab.require("nftables")
        for family in self.families:
            self.tables[family] = fwnft.init_table(family, self.fw)
            self.sync(family)

    def new_network(self, net: Network) -> None:
        for family in self.families:
            fwnft.add_network(self.tables[family], self.fw, net.firewall)
            self.sync(family)

    def add_endpoint(self, net: Network, ep: fw.Endpoint, bindings: Bindings) -> None:
        for family in self.families:
            table = self.tables[family]
            fwnft.add_endpoint(table, self.fw, net.firewall, ep)
            # Each family's table takes the bindings of both (moby's nftabler skips the others).
            fwnft.add_ports(table, self.fw, net.firewall, bindings(4) + bindings(6))
            self.sync(family)

    def docker_user(self, spec: str, family: int) -> None:
        raise ValidationError(f"DOCKER-USER: no such chain for IPv{family} with this daemon "
                              f"(layout {self.layout}, iptables/ip6tables and docker_user on)")

    def resolver(self, node: Node, udp: int, tcp: int) -> None:
        from nsbox.kits.dockerfw import resolver

        self.lab.require("nftables")
        node.nftables(fwnft.loadable(resolver.nftables_rules(udp, tcp)))

    def text(self, family: int) -> str:
        return self.tables[family].text()

    def sync(self, family: int) -> None:
        """The table as the host's model holds it: replaced where it is (the ruleset's place
        among the host's keeps the order nft loads them in), added the first time."""
        text = fwnft.loadable(self.tables[family].text())
        self.host.firewall.nftables(text, replaces=self._loaded.get(family))
        self._loaded[family] = text


FIREWALLERS: dict[str, type] = {"29": Iptabler, "29-nftables": Nftabler, "20.10": Iptabler2010}


def endpoint_of(ip: str, ip6: str | None) -> fw.Endpoint:
    return fw.Endpoint(ipaddress.IPv4Address(ip), ipaddress.IPv6Address(ip6) if ip6 else None)
