"""Expectations the verifier turns into real traffic and kernel queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union


@dataclass(frozen=True)
class ReachCheck:
    """SRC reaches (allow) or does not reach (deny) DST with PROTO[/PORT]."""

    name: str
    src: str
    dst: str  # node name or an address owned by a lab node
    proto: Literal["icmp", "tcp", "udp", "http", "dns"]
    port: int | None = None
    allow: bool = True
    seen_from: str | None = None  # the server must see this source address
    # deny checks: the rule that must drop the probe, as (node, table, chain, spec);
    # spec is the rule as the recipe wrote it, or "policy" for the chain's policy.
    dropped_by: tuple[str, str, str, str] | None = None
    # allow checks: the container (one of the set) whose server must answer
    answered_by: frozenset[str] | None = None
    # dns checks: the name asked for, and the A record it must get (None: NXDOMAIN)
    query: str | None = None
    answer: str | None = None
    # a node-name target: probe its first address of this family (4 or 6); None: its first
    family: int | None = None

    @property
    def expected(self) -> str:
        if self.proto == "dns":
            return f"answer {self.answer}" if self.answer else "NXDOMAIN"
        if self.allow and (self.seen_from or self.answered_by):
            parts = []
            if self.answered_by:
                parts.append("answered by " + "|".join(sorted(self.answered_by)))
            if self.seen_from:
                parts.append(f"seen from {self.seen_from}")
            return "allow, " + ", ".join(parts)
        if self.dropped_by:
            return f"deny, dropped by {describe_rule(self.dropped_by)}"
        return "allow" if self.allow else "deny"


def describe_rule(rule: tuple[str, str, str, str]) -> str:
    node, table, chain, spec = rule
    return f"{node} {table} {chain} policy" if spec == "policy" else f"{node} {table} -A {chain} {spec}"


@dataclass(frozen=True)
class ConntrackCheck:
    """NODE's conntrack table holds the connection made by check OF, and its
    reply tuple is addressed to REPLY_DST (the NAT'd source)."""

    name: str
    node: str
    of: str
    reply_dst: str
    # DNAT: the reply comes from this address (and port), the endpoint the DNAT chose
    reply_src: str | None = None
    reply_sport: int | None = None

    @property
    def expected(self) -> str:
        src = ""
        if self.reply_src:
            src = f" from {self.reply_src}" + (f":{self.reply_sport}" if self.reply_sport else "")
        return f"entry, reply{src} to {self.reply_dst}"


@dataclass(frozen=True)
class LinkCheck:
    """IFACE of NODE is in operational state STATE ("UP", "DOWN", "LOWERLAYERDOWN", ...),
    read from the kernel (IFLA_OPERSTATE, what `ip link` prints after `state`)."""

    name: str
    node: str
    iface: str
    state: str

    @property
    def expected(self) -> str:
        return f"state {self.state}"


@dataclass(frozen=True)
class BindCheck:
    """CONTAINER cannot listen on PROTO/PORT because HELD_BY's server already does in the same
    netns (the kernel's EADDRINUSE): a second `docker run --network host` on a taken port."""

    name: str
    container: str
    proto: Literal["tcp", "udp"]
    port: int
    held_by: str

    @property
    def expected(self) -> str:
        return f"port taken by {self.held_by}"


@dataclass(frozen=True)
class InterfacesCheck:
    """The netns of NODE (a node or a container) holds exactly the interfaces NAMES: what
    `ip link` lists there (a --network none container: lo alone)."""

    name: str
    node: str
    names: tuple[str, ...]

    @property
    def expected(self) -> str:
        return "interfaces " + ", ".join(sorted(self.names))


from nsbox.model.routes import NeighCheck, RouteCheck  # noqa: E402  (its own module: the CNI layouts' additions)

Check = Union[ReachCheck, ConntrackCheck, LinkCheck, BindCheck, InterfacesCheck, RouteCheck, NeighCheck]
