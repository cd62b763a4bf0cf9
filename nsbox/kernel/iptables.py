"""Write a node's Firewall model with python-iptables (legacy xtables backend).

libiptc binds a table handle to the netns of the thread that initialises it,
and iptc caches Table objects by name, so each table is refreshed after
entering the node and committed once (one atomic replace per table).
"""

from __future__ import annotations

from nsbox.errors import KernelError
from nsbox.model.firewall import Firewall
from nsbox.model.rules import Rule


def _iptc():
    try:
        import iptc  # loads libxtables; imported late so unit tests need no iptables
    except Exception as e:  # pragma: no cover - depends on the host
        raise KernelError(f"python-iptables cannot load libxtables: {e}") from None
    return iptc


def apply(node: str, firewall: Firewall) -> None:
    """Apply FIREWALL to the netns the current thread is in."""
    iptc = _iptc()
    for model in firewall.used_tables():
        try:
            table = iptc.Table(model.name)
            table.autocommit = False
            table.refresh()  # a fresh handle in *this* netns
            for chain in model.chains.values():
                if not chain.builtin:
                    table.create_chain(chain.name)
            for chain in model.chains.values():
                ch = iptc.Chain(table, chain.name)
                if chain.policy:
                    ch.set_policy(iptc.Policy(chain.policy))
                for rule in chain.rules:
                    ch.append_rule(_to_iptc(iptc, rule))
            table.commit()
            table.refresh()  # never close(): iptc's Target() looks up every cached table
        except KernelError:
            raise
        except Exception as e:
            raise KernelError(f"{node}: iptables -t {model.name}: {e}") from None


def _neg(v) -> str:
    return ("!" if v.invert else "") + v.value


def _to_iptc(iptc, rule: Rule):
    r = iptc.Rule()
    if rule.src:
        r.src = _neg(rule.src)
    if rule.dst:
        r.dst = _neg(rule.dst)
    if rule.in_iface:
        r.in_interface = _neg(rule.in_iface)
    if rule.out_iface:
        r.out_interface = _neg(rule.out_iface)
    if rule.proto:
        r.protocol = _neg(rule.proto)
    try:
        for m in rule.matches:
            match = r.create_match(m.name)
            for o in m.options:
                match.parse(o.name, ("!" if o.invert else "") + (o.value or ""))
        if rule.target:
            target = r.create_target(rule.target.name)
            for o in rule.target.options:
                target.parse(o.name, ("!" if o.invert else "") + (o.value or ""))
    except Exception as e:
        raise KernelError(f"iptables rule {rule.render()!r}: {e}") from None
    return r
