"""The xtables vocabulary Docker's iptables layouts share (29's iptabler in iptables.py,
20.10's in legacy.py): the tables and built-in chains, Docker's chain names, a `Ruleset`
with moby's insert/append/"no-op if it exists" semantics, and how `iptables-save` spells
an address, a port match or ICMP. Pure: no kernel, no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

from nsbox.kits.dockerfw.config import IPAddress
from nsbox.model import save

Family = Literal[4, 6]
TABLES: tuple[str, ...] = ("raw", "filter", "nat")
BUILTIN: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),  # 20.10's sctp rule
}

DOCKER = "DOCKER"
DOCKER_FORWARD = "DOCKER-FORWARD"
DOCKER_BRIDGE = "DOCKER-BRIDGE"
DOCKER_CT = "DOCKER-CT"
DOCKER_INTERNAL = "DOCKER-INTERNAL"
DOCKER_USER = "DOCKER-USER"
ISOLATION_1 = "DOCKER-ISOLATION-STAGE-1"
ISOLATION_2 = "DOCKER-ISOLATION-STAGE-2"


@dataclass
class Ruleset:
    """One family's raw/filter/nat tables as the kernel holds them: chain → rules (each rule
    the text after `-A CHAIN `), plus built-in chain policies."""

    chains: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: {t: {c: [] for c in BUILTIN[t]} for t in BUILTIN}
    )
    policies: dict[tuple[str, str], str] = field(default_factory=dict)

    def new_chain(self, table: str, chain: str) -> None:
        self.chains[table].setdefault(chain, [])

    def exists(self, table: str, chain: str, rule: str) -> bool:
        return rule in self.chains[table].get(chain, [])

    # moby's Rule.Append / Rule.Insert: a no-op when the rule is already in the chain.
    def append(self, table: str, chain: str, rule: str) -> None:
        if not self.exists(table, chain, rule):
            self.chains[table][chain].append(rule)

    def insert(self, table: str, chain: str, rule: str) -> None:
        if not self.exists(table, chain, rule):
            self.chains[table][chain].insert(0, rule)

    def delete(self, table: str, chain: str, rule: str) -> None:
        if self.exists(table, chain, rule):
            self.chains[table][chain].remove(rule)

    def ensure_jump(self, table: str, from_chain: str, to_chain: str) -> None:
        """moby IPTable.EnsureJumpRule: delete the jump if present, insert it at the top."""
        rule = f"-j {to_chain}"
        self.delete(table, from_chain, rule)
        self.chains[table][from_chain].insert(0, rule)

    def lines(self, table: str) -> list[str]:
        """`iptables-save -t TABLE` between `*TABLE` and `COMMIT`: built-in chains in the
        kernel's order, then user chains sorted by name (both legacy and nft backends list
        them so), then every chain's rules in that same chain order."""
        builtin = BUILTIN[table]
        user = sorted(c for c in self.chains[table] if c not in builtin)
        out = [f":{c} {self.policies.get((table, c), 'ACCEPT')} [0:0]" for c in builtin]
        out += [f":{c} - [0:0]" for c in user]
        for chain in (*builtin, *user):
            out += [f"-A {chain} {rule}" for rule in self.chains[table][chain]]
        return out

    def tables(self, names: Iterable[str] = TABLES) -> dict[str, list[str]]:
        return {t: self.lines(t) for t in names}

    @classmethod
    def parse(cls, tables: dict[str, list[str]]) -> "Ruleset":
        """Read back `tables()` output (so `daemon_rules` can add to `render`'s result)."""
        rs = cls()
        for table, lines in tables.items():
            for ln in save.lines(lines, table=table):
                if ln.kind == "chain":
                    rs.new_chain(table, ln.chain)
                    if ln.policy != "-":
                        rs.policies[(table, ln.chain)] = ln.policy
                elif ln.kind == "rule":
                    rs.chains[table][ln.chain].append(ln.spec)
        return rs


def save_text(tables: dict[str, list[str]]) -> str:
    """TABLES as `iptables-save -t raw; -t filter; -t nat` print them (comments stripped):
    the layout of Docker's golden files. Tables not in TABLES (20.10 has no raw table)
    are not printed, as iptables-save prints no table nothing ever used."""
    out: list[str] = []
    for table in (*TABLES, *sorted(set(tables) - set(TABLES))):
        if table in tables:
            out += [f"*{table}", *tables[table], "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


# --- spelling helpers: what iptables-save prints for an address / a port match ---------

def host(ip: IPAddress) -> str:
    return f"{ip}/{ip.max_prefixlen}"


def icmp(family: int) -> str:
    return "icmp" if family == 4 else "ipv6-icmp"


def loopback(family: int) -> str:
    # moby loopbackAddress()
    return "127.0.0.0/8" if family == 4 else "::1/128"


def join_host_port(ip: IPAddress, port: int) -> str:
    # Go's net.JoinHostPort: brackets around IPv6.
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def dport(proto: str, port: int) -> str:
    # `-p tcp --dport N` loads the tcp match implicitly; iptables-save prints `-m tcp`.
    return f"-p {proto} -m {proto} --dport {port}"
