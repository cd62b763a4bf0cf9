"""A reference to one firewall rule (or chain policy), as a check names it: `dropped_by`
(the rule that must drop a denied probe) and `counted_by` (any rule, any target, whose
packet counter must rise for a probe).

A recipe writes it as the 4-tuple (node, table, chain, spec):

    (node, "filter", "FORWARD", "-s 10.0.0.0/24 -j DROP")    IptablesRule
    (node, "filter", "FORWARD", "policy")                     IptablesPolicy
    (node, "nft", "inet filter forward", "drop")              NftRule  (chain "FAMILY TABLE CHAIN",
                                                              spec: text the rule holds)

rule_ref() turns that tuple into its variant. Each variant owns its validation (the rule
is in the lab's model), its counter reading (the kernel's own counters, `iptables-save -c`
or `nft list ruleset`, through the observers in nsbox.observe) and its description for
reports. The variants stay tuples (NamedTuple), so the recipe API, `ref[1]`, `==` with a
tuple and the serialized JSON (a list of four strings) are unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, NamedTuple

from nsbox.errors import ValidationError

if TYPE_CHECKING:
    from nsbox.model.lab import Lab

NFT_FAMILIES = ("ip", "ip6", "inet", "bridge", "arp", "netdev")
_DROPS = re.compile(r"\b(drop|reject)\b")


@dataclass(frozen=True)
class Counters:
    """A node's rule packet counters, as one check reads them around its probe."""

    read: Callable[[], dict[Hashable, int]]  # rule key -> packets (only_drops: DROP/REJECT rules, DROP policies)
    wanted: Callable[[Hashable], bool]        # the rule the check names
    describe: Callable[[Hashable], str]
    what: str                                 # "deny, but no DROP rule of host counted it" says ...
    note: str = ""                            # appended to the detail


class _Ref(NamedTuple):
    node: str
    table: str  # an iptables table, or "nft"
    chain: str  # an iptables chain, or "FAMILY TABLE CHAIN"
    spec: str   # the rule as the recipe wrote it, "policy", or (nft) text the rule holds


class RuleRef(_Ref):
    """Base of the variants; never made directly (rule_ref() picks the variant)."""

    __slots__ = ()
    tag = ""

    def describe(self) -> str:
        raise NotImplementedError

    def validate(self, lab: Lab, check: str, family: int, what: str, drops: bool) -> None:
        """ValidationError (one line, naming CHECK) unless the lab's model has this rule, in the
        tables of the probe's FAMILY; DROPS: it must drop (dropped_by)."""
        raise NotImplementedError

    def counters(self, built: Any, family: int, only_drops: bool) -> Counters:
        """The node's rule counters, read from the kernel in the node's netns."""
        raise NotImplementedError

    def exists(self, lab: Lab, family: int, drops: bool = True) -> bool:
        try:
            self.validate(lab, "", family, "", drops)
        except ValidationError:
            return False
        return True


class IptablesRule(RuleRef):
    __slots__ = ()
    tag = "iptables rule"

    def describe(self) -> str:
        return f"{self.node} {self.table} -A {self.chain} {self.spec}"

    def validate(self, lab: Lab, check: str, family: int, what: str, drops: bool) -> None:
        from nsbox.model.rules import parse_rule

        ch, where = _iptables_chain(lab, self, check, family, what)
        rendered = parse_rule(self.spec, family).render()
        if not any(r.render() == rendered for r in ch.rules):
            raise ValidationError(f"check {check!r}: node {self.node} has no rule '-A {self.chain} {self.spec}' "
                                  f"in table {self.table}" + (" of ip6tables (the probe is IPv6)" if family == 6 else ""))

    def counters(self, built: Any, family: int, only_drops: bool) -> Counters:
        from nsbox.model.rules import parse_rule

        return _iptables_counters(built, self, (self.table, self.chain, parse_rule(self.spec, family).render()),
                                  family, only_drops)


class IptablesPolicy(RuleRef):
    __slots__ = ()
    tag = "iptables policy"

    def describe(self) -> str:
        return f"{self.node} {self.table} {self.chain} policy"

    def validate(self, lab: Lab, check: str, family: int, what: str, drops: bool) -> None:
        ch, where = _iptables_chain(lab, self, check, family, what)
        if not ch.builtin:
            raise ValidationError(f"check {check!r}: {self.table} {self.chain} {where} is no builtin chain: "
                                  f"it has no policy")
        if drops and ch.policy != "DROP":
            raise ValidationError(f"check {check!r}: the policy of {self.table} {self.chain} {where} is not DROP")

    def counters(self, built: Any, family: int, only_drops: bool) -> Counters:
        return _iptables_counters(built, self, (self.table, self.chain, "policy"), family, only_drops)


class NftRule(RuleRef):
    __slots__ = ()
    tag = "nft rule"

    def describe(self) -> str:
        return f"{self.node} nft {self.chain}: {self.spec}"

    def validate(self, lab: Lab, check: str, family: int, what: str, drops: bool) -> None:
        """The node's nftables rulesets must have the chain, and a rule in it whose text holds
        SPEC (DROPS: a drop or reject rule). The probe's family does not pick the table: an
        nft chain names its family itself."""
        words = self.chain.split()
        if len(words) != 3 or words[0] not in NFT_FAMILIES:
            raise ValidationError(f"check {check!r}: an nft {what} names its chain as 'FAMILY TABLE CHAIN' "
                                  f"(e.g. 'ip docker-bridges raw-PREROUTING'), not {self.chain!r}")
        n = lab.nodes.get(self.node)
        text = "\n".join(n.firewall.nft) if n else ""
        fam, table, name = words
        m = re.search(rf"^table {re.escape(fam)} {re.escape(table)} \{{(.*?)^\}}", text, re.S | re.M)
        body = re.search(rf"^\s*chain {re.escape(name)} \{{(.*?)^\s*\}}", m.group(1), re.S | re.M) if m else None
        if body is None:
            raise ValidationError(f"check {check!r}: node {self.node} has no nftables chain {self.chain}")
        if not any(self.spec in ln and (not drops or _DROPS.search(ln)) for ln in body.group(1).splitlines()):
            raise ValidationError(f"check {check!r}: no {'drop ' if drops else ''}rule in nftables chain "
                                  f"{self.chain} of node {self.node} holds {self.spec!r}")

    def counters(self, built: Any, family: int, only_drops: bool) -> Counters:
        """The packet counter of the nftables rule(s) of the chain holding the text, as
        `nft list ruleset` prints them in the node (a rule without `counter` has none)."""
        from nsbox.observe import counters
        from nsbox.wire import nftables

        node, chain, spec = self.node, self.chain, self.spec
        path = built.path(node)

        def read() -> dict[Hashable, int]:
            rules = counters.nft_rule_counters(path)
            wanted = set(nftables.matching(rules, chain, spec, only_drops))
            # a rule's key: its place and text, so a rule listed differently is a different rule
            return {(i, ch, text, i in wanted): n for i, (ch, text, n) in enumerate(rules)
                    if n is not None and (not only_drops or _DROPS.search(text))}

        return Counters(read, lambda k: k[3], lambda k: f"{node} nft {k[1]}: {k[2]}",  # type: ignore[index]
                        f"nftables {'drop ' if only_drops else ''}rule of {node}",
                        f"; counters of {node}'s nftables rules")


def rule_ref(value: Any) -> RuleRef:
    """The variant for a (node, table, chain, spec) tuple (or list, from JSON); ValueError
    when VALUE is not four strings."""
    if isinstance(value, RuleRef):
        return value
    if not isinstance(value, (tuple, list)) or len(value) != 4 or not all(isinstance(x, str) for x in value):
        raise ValueError("a rule reference is (node, table, chain, rule spec or 'policy')")
    node, table, chain, spec = value
    if table == "nft":
        return NftRule(node, table, chain, spec)
    return (IptablesPolicy if spec == "policy" else IptablesRule)(node, table, chain, spec)


def maybe_rule_ref(value: Any) -> Any:
    """rule_ref(VALUE) where VALUE is one; else VALUE as it is (None, or something malformed
    that validation reports in its own words)."""
    try:
        return rule_ref(value)
    except ValueError:
        return tuple(value) if isinstance(value, list) else value


def describe_rule(rule: Any) -> str:
    """A rule reference (or its tuple) as reports name it."""
    return rule_ref(rule).describe()


def _iptables_chain(lab: Lab, ref: RuleRef, check: str, family: int, what: str):
    # An IPv6 probe only meets ip6tables rules: the probe's family picks the tables.
    n = lab.nodes.get(ref.node)
    t = n.firewall.family(family).get(ref.table) if n else None
    ch = t.chains.get(ref.chain) if t else None
    where = f"in node {ref.node}" + (" (ip6tables: the probe is IPv6)" if family == 6 else "")
    if ch is None:
        raise ValidationError(f"check {check!r}: {what} names no chain {ref.chain} of table {ref.table} {where}")
    return ch, where


def _iptables_counters(built: Any, ref: RuleRef, want: tuple[str, str, str], family: int,
                       only_drops: bool) -> Counters:
    """The node's iptables (FAMILY 6: ip6tables) rule counters (ONLY_DROPS: of its
    DROP/REJECT rules and DROP policies), keyed (table, chain, rendered spec or "policy")."""
    from nsbox.observe import counters

    node = ref.node
    firewall = built.lab.nodes[node].firewall
    path = built.path(node)
    return Counters(lambda: counters.rule_counters(path, firewall, built.iptables, family,  # type: ignore[arg-type]
                                                   only_drops),
                    lambda k: k == want, lambda k: rule_ref((node, *k)).describe(),  # type: ignore[misc]
                    f"{'DROP ' if only_drops else ''}rule of {node}",
                    f"; counters of {node}'s ip6tables rules" if family == 6 else "")
