"""A node's iptables state as data: tables, chains, policies and rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from nsbox.errors import ValidationError
from nsbox.model.names import control_char
from nsbox.model.rules import Rule, parse_rule

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
# Matches and targets that make the kernel track connections in a netns.
_CT_MATCHES = {"conntrack", "state", "connmark", "helper", "connbytes", "connlimit"}
_CT_TARGETS = {"CONNMARK", "CT", "MASQUERADE", "SNAT", "DNAT"}
# iptables-save prints tables in this order
TABLE_ORDER = ("raw", "mangle", "nat", "filter")


@dataclass
class Chain:
    name: str
    builtin: bool
    policy: str | None = None  # only builtin chains have one; None = kernel default ACCEPT
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    family: int = 4  # 6: an ip6tables table (a rule's defaults, e.g. REJECT's, depend on it)

    def __post_init__(self) -> None:
        for c in BUILTIN_CHAINS[self.name]:
            self.chains.setdefault(c, Chain(c, builtin=True))

    def new_chain(self, name: str) -> Table:
        """`iptables -t TABLE -N NAME`"""
        if name in self.chains:
            raise ValidationError(f"chain {name} already exists in table {self.name}")
        if not name or len(name) > 28 or name.startswith(("-", "!")) or any(c.isspace() for c in name) \
                or control_char(name):
            # iptables: "Invalid chain name" (a newline would also end the restore line early)
            raise ValidationError(f"bad chain name {name!r} (1-28 characters, no spaces or control "
                                  f"characters, not starting with '-' or '!')")
        self.chains[name] = Chain(name, builtin=False)
        return self

    def policy(self, chain: str, target: str) -> Table:
        """`iptables -t TABLE -P CHAIN TARGET`"""
        c = self._chain(chain)
        if not c.builtin:
            raise ValidationError(f"only builtin chains have a policy, not {chain}")
        if target not in ("ACCEPT", "DROP"):
            raise ValidationError(f"policy must be ACCEPT or DROP, not {target!r}")
        c.policy = target
        return self

    def append(self, chain: str, spec: str) -> Table:
        """`iptables -t TABLE -A CHAIN SPEC`"""
        self._chain(chain).rules.append(parse_rule(spec, self.family))
        return self

    def insert(self, chain: str, spec: str, position: int = 1) -> Table:
        """`iptables -t TABLE -I CHAIN [POSITION] SPEC`: POSITION counts from 1 (the top, as
        real agents insert their jumps: portmap's CNI-HOSTPORT-MASQ, kube-proxy's portals);
        one past the last rule appends."""
        rules = self._chain(chain).rules
        if type(position) is not int or not 1 <= position <= len(rules) + 1:
            raise ValidationError(f"iptables -t {self.name} -I {chain} {position!r}: position must be 1-"
                                  f"{len(rules) + 1} (the chain has {len(rules)} rule(s); iptables: index of "
                                  f"insertion too big)")
        rules.insert(position - 1, parse_rule(spec, self.family))
        return self

    def _chain(self, name: str) -> Chain:
        try:
            return self.chains[name]
        except KeyError:
            raise ValidationError(f"no chain {name} in table {self.name} (create it with new_chain)") from None

    @property
    def is_empty(self) -> bool:
        return all(c.builtin and not c.rules and c.policy is None for c in self.chains.values())

    def save_lines(self) -> list[str]:
        """The table's chain and rule lines as iptables-save prints them (no counters)."""
        lines = []
        builtin = [c for c in self.chains.values() if c.builtin]
        user = sorted((c for c in self.chains.values() if not c.builtin), key=lambda c: c.name)
        for c in builtin:
            lines.append(f":{c.name} {c.policy or 'ACCEPT'}")
        for c in user:
            lines.append(f":{c.name} -")
        for c in builtin + user:
            for r in c.rules:
                lines.append(f"-A {c.name} {r.render()}")
        return lines


@dataclass
class Firewall:
    """A node's xtables state: `tables` is what `iptables` shows, `tables6` what
    `ip6tables` shows (dockerd writes a chain skeleton there even on IPv4-only
    networks). Each family goes to the kernel in one restore."""

    tables: dict[str, Table] = field(default_factory=dict)
    tables6: dict[str, Table] = field(default_factory=dict)
    nft: list[str] = field(default_factory=list)  # native nftables rulesets, `nft -f` input, in order

    def nftables(self, ruleset: str, *, replaces: str | None = None) -> None:
        """Add a native nftables ruleset (loaded with `nft -f`, one transaction). REPLACES:
        a ruleset added before, which this one takes the place of (a kit rewriting its own
        table as its daemon's events change it); None, or one not there: added at the end."""
        if not isinstance(ruleset, str) or not ruleset.strip():
            raise ValidationError("an nftables ruleset must be non-empty `nft -f` text")
        if replaces is not None and replaces in self.nft:
            self.nft[self.nft.index(replaces)] = ruleset
        else:
            self.nft.append(ruleset)

    def table(self, name: str, family: int = 4) -> Table:
        """`iptables -t NAME` (family 4) or `ip6tables -t NAME` (family 6)."""
        if name not in BUILTIN_CHAINS:
            raise ValidationError(f"unknown iptables table {name!r} (raw, mangle, nat, filter)")
        tables = self.family(family)
        if name not in tables:
            tables[name] = Table(name, family=family)
        return tables[name]

    def family(self, family: int) -> dict[str, Table]:
        if family not in (4, 6):
            raise ValidationError(f"address family must be 4 or 6, not {family!r}")
        return self.tables if family == 4 else self.tables6

    def used_tables(self, family: int = 4) -> list[Table]:
        tables = self.family(family)
        return [tables[t] for t in TABLE_ORDER if t in tables and not tables[t].is_empty]

    @property
    def needs_conntrack(self) -> bool:
        """Whether any rule makes the kernel track connections in this netns."""
        for t in self.used_tables(4) + self.used_tables(6):
            if t.name == "nat":
                return True
            for c in t.chains.values():
                for r in c.rules:
                    if any(m.name in _CT_MATCHES for m in r.matches) or r.jumps_to in _CT_TARGETS:
                        return True
        return False
