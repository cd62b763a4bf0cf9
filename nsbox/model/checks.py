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
    proto: str  # a probe protocol: nsbox/kinds/protocols/ (icmp, tcp, udp, http, dns, sctp, ...)
    port: int | None = None
    allow: bool = True
    # the server must see this source address (or one of these: several are any of them)
    seen_from: str | tuple[str, ...] | None = None
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
    # any check: the rule whose packet counter must rise for this probe, any target (ACCEPT,
    # DNAT, MASQUERADE, a jump...), named as dropped_by names one
    counted_by: tuple[str, str, str, str] | None = None
    # deny checks: how the denial must show (DENY_KINDS), None: any way
    deny: str | None = None
    # icmp checks: the echo request's IP packet size in bytes (header included, as an MTU
    # counts it; None: a small one), sent with don't-fragment when df
    size: int | None = None
    df: bool = False

    @property
    def seen_froms(self) -> tuple[str, ...]:
        """seen_from as a tuple (empty: none asked for)."""
        if self.seen_from is None:
            return ()
        return (self.seen_from,) if isinstance(self.seen_from, str) else tuple(self.seen_from)

    @property
    def expected(self) -> str:
        base = self._expected()
        return f"{base}, counted by {describe_rule(self.counted_by)}" if self.counted_by else base

    def _expected(self) -> str:
        from nsbox.kinds import protocols

        proto = protocols.PROTOCOLS.get(self.proto)
        if proto is not None and proto.expected is not None:  # dns: the answer it must get
            return proto.expected(self)
        if self.allow and (self.seen_from or self.answered_by):
            parts = []
            if self.answered_by:
                parts.append("answered by " + "|".join(sorted(self.answered_by)))
            if self.seen_from:
                parts.append("seen from " + "|".join(self.seen_froms))
            return "allow, " + ", ".join(parts)
        deny = f"deny ({self.deny})" if self.deny else "deny"
        if self.dropped_by:
            return f"{deny}, dropped by {describe_rule(self.dropped_by)}"
        return "allow" if self.allow else deny


# How a denial shows at the source (ProbeResult.kind): refused = a TCP RST or ICMP port
# unreachable (ECONNREFUSED); unreachable = ICMP net/host unreachable, or no route / no
# neighbour here; filtered = ICMP administratively prohibited (iptables REJECT
# --reject-with icmp-admin-prohibited, icmp-net/host-prohibited), or this netns's own
# OUTPUT dropped it (EPERM); timeout = nothing came back.
DENY_KINDS = ("refused", "timeout", "unreachable", "filtered")


def describe_rule(rule: tuple[str, str, str, str]) -> str:
    node, table, chain, spec = rule
    if table == "nft":
        return f"{node} nft {chain}: {spec}"
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
