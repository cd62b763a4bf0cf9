"""Plan steps and the planner: a validated Lab -> an ordered list of Steps.

The order is the one the kernel needs: every namespace first; then, node by
node, the links a node creates (bridges before the veths enslaved to them; a
veth pair is created from its b side, where the bridge usually is, its peer
going straight into the a namespace); then, node by node, sysctls (some must be
set before an interface comes up: disable_ipv6; per-interface keys need the
interface, which exists by then), links up, addresses, routes, policy rules,
neighbour and FDB entries, and last the node's firewall in one restore.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from shlex import quote as q  # step texts are shell commands (`nsbox explain`): every name is quoted
from typing import Any, Callable, Protocol, Union

from nsbox.wire import routing, rtnl
from nsbox.wire.rtnl import NLM_F_ACK, NLM_F_REQUEST, RTM_NEWADDR, RTM_NEWLINK
from nsbox.kinds import links as kinds
from nsbox.model import Lab, Node
from nsbox.model import linkopts
from nsbox.model.lab import Link
from nsbox.kinds.firewalls import kinds as firewall_kinds
from nsbox.model.firewall import Firewall as FirewallModel
from nsbox.model.ipsets import IPSet as IPSetModel


class Context(Protocol):
    """What a netlink step needs from the applier while it is being encoded."""

    def index(self, ifname: str) -> int: ...        # ifindex in the step's node
    def netns_fd(self, node: str) -> int: ...       # an open fd of another node's netns


@dataclass(frozen=True)
class Netns:
    """`ip netns add NODE`: a new namespace pinned at /run/netns/NODE."""


@dataclass(frozen=True)
class Netlink:
    """One rtnetlink request, encoded when it is sent (ifindexes are known only then)."""

    encode: Callable[[Context], Any]   # -> a pyroute2 message
    msg_type: int
    flags: int = rtnl._CREATE
    creates: tuple[str, ...] = ()       # interfaces this request makes in the step's node
    needs: tuple[str, ...] = ()         # interfaces whose ifindex it needs


@dataclass(frozen=True)
class Sysctl:
    key: str
    value: str
    optional: bool = False  # skipped where this kernel lacks the key


@dataclass(frozen=True)
class Firewall:
    """The node's firewall, every kind in one go each (kernel/firewall.apply)."""

    firewall: FirewallModel


@dataclass(frozen=True)
class IPSets:
    """The node's ipsets, created with their entries in one `ipset restore` (kernel/ipset.py),
    before the firewall step whose rules match them."""

    sets: tuple[IPSetModel, ...]


Action = Union[Netns, Netlink, Sysctl, IPSets, Firewall]


@dataclass(frozen=True)
class Step:
    node: str
    text: str          # what a person types inside the node: `ip link add …`, `sysctl -w …`
    action: Action
    comment: str = ""  # why, for `nsbox explain`

    def __str__(self) -> str:
        return f"{self.node}: {self.text}"


@dataclass
class Plan:
    lab: Lab
    steps: list[Step] = field(default_factory=list)

    def add(self, node: str, text: str, action: Action, comment: str = "") -> None:
        self.steps.append(Step(node, text, action, comment))


def plan_lab(lab: Lab) -> Plan:
    plan = Plan(lab)
    for node in lab.nodes.values():
        plan.add(node.name, f"ip netns add {q(node.name)}", Netns())
    created_up: dict[str, set[str]] = {n: set() for n in lab.nodes}
    for node in lab.nodes.values():
        _links(plan, lab, node, created_up[node.name])
    for link in lab.links:
        _kind_link(plan, link)
    for pair in lab.veths:
        created_up[pair.b_node].add(pair.b_name)
    for node in lab.nodes.values():
        _configure(plan, node, created_up[node.name])
    return plan


def _links(plan: Plan, lab: Lab, node: Node, created_up: set[str]) -> None:
    for br in (i for i in node.interfaces.values() if i.kind == "bridge"):
        plan.add(node.name, f"ip link add {q(br.name)}{linkopts.link_words(br)} type bridge{linkopts.bridge_words(br)}",
                 Netlink(lambda ctx, br=br: rtnl.bridge(br.name, br.mtu, linkopts.link_attrs(br),
                                                        linkopts.bridge_data(br)),
                         RTM_NEWLINK, creates=(br.name,)))
    for pair in (p for p in lab.veths if p.b_node == node.name):
        b = node.interfaces[pair.b_name]
        a = lab.nodes[pair.a_node].interfaces[pair.a_name]
        text = (f"ip link add {q(pair.b_name)}{linkopts.link_words(b)} type veth "
                f"peer name {q(pair.a_name)}{linkopts.link_words(a)} netns {q(pair.a_node)}")
        if b.master or b.up:
            text += f"\nip link set {q(pair.b_name)}" + (f" master {q(b.master)}" if b.master else "") + (" up" if b.up else "")

        def encode(ctx: Context, pair=pair, a=a, b=b):
            master = ctx.index(b.master) if b.master else None
            return rtnl.veth(pair.b_name, pair.a_name, ctx.netns_fd(pair.a_node), master, b.mtu,
                             linkopts.link_attrs(b), linkopts.link_attrs(a), up=b.up)

        plan.add(node.name, text,
                 Netlink(encode, RTM_NEWLINK, creates=(pair.b_name,), needs=(b.master,) if b.master else ()),
                 f"a veth pair: {pair.b_name} here, its peer {pair.a_name} in {pair.a_node}")
        if linkopts.port_words(b):
            plan.add(node.name, f"ip link set {q(pair.b_name)} type bridge_slave {linkopts.port_words(b)}",
                     Netlink(lambda ctx, b=b: rtnl.bridge_port(ctx.index(b.name), linkopts.port_data(b)),
                             RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, needs=(b.name,)),
                     f"options of {b.name} as a port of {b.master}")


def _kind_link(plan: Plan, link: Link) -> None:
    """A link of a registered kind, in declaration order (a parent or `dev` is always
    declared, hence created, before what needs it)."""
    k = kinds.get(link.kind)
    needs = ((link.parent[1],) if link.parent else ()) + k.depends(link.spec())
    creates = (link.name,) if link.made_in == link.node else ()
    comment = f"{link.kind} {link.name} of {link.node}" + (
        f", made on {link.parent[0]}'s {link.parent[1]} and moved into {link.node}"
        if link.parent and link.made_in != link.node else "")
    iface = plan.lab.nodes[link.node].interfaces[link.name]
    made = link
    if link.made_in != link.node and link.name in plan.lab.nodes[link.made_in].interfaces:
        # Until 6.x (Debian's 6.1 among them) RTM_NEWLINK looks the new name up in the namespace
        # the request is sent in, not in the one IFLA_NET_NS_FD moves the link to: a child named
        # like a link of its parent's node (eth0) is EEXIST there. It is made under a name of
        # its own and renamed once in its node (found by `nsbox run --kernel`, nsbox/vm).
        made = replace(link, name=_interim_name(plan.lab, link))
        comment += f" (made as {made.name}: {link.made_in} has its own {link.name})"
    plan.add(link.made_in, kinds.ip_text(made, linkopts.link_words(iface)),
             Netlink(lambda ctx, made=made: kinds.encode(made, ctx, linkopts.link_attrs(iface)), RTM_NEWLINK,
                     creates=creates, needs=needs),
             comment)
    if made is not link:
        plan.add(link.node, f"ip link set {q(made.name)} name {q(link.name)}",
                 Netlink(lambda ctx, made=made, link=link: rtnl.link_set(ctx.index(made.name),
                                                                         [("IFLA_IFNAME", link.name)]),
                         RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, creates=(link.name,), needs=(made.name,)))


def _interim_name(lab: Lab, link: Link) -> str:
    """A name free in both the parent's node and the link's: nsbc0, nsbc1..."""
    taken = set(lab.nodes[link.made_in].interfaces) | set(lab.nodes[link.node].interfaces)
    return next(n for n in (f"nsbc{i}" for i in range(len(lab.links) + len(taken) + 1)) if n not in taken)


def _configure(plan: Plan, node: Node, created_up: set[str]) -> None:
    for key, value in node.sysctls.items():
        optional = key in node.optional_sysctls
        plan.add(node.name, f"sysctl -w {q(f'{key}={value}')}", Sysctl(key, value, optional),
                 "skipped where this kernel lacks the key" if optional else "")
    lo = node.interfaces["lo"]
    if linkopts.link_words(lo):  # the loopback exists already: its options are set, not created
        plan.add(node.name, f"ip link set lo{linkopts.link_words(lo)}",
                 Netlink(lambda ctx, lo=lo: rtnl.link_set(1, linkopts.link_attrs(lo)), RTM_NEWLINK,
                         NLM_F_REQUEST | NLM_F_ACK))
    for iface in node.interfaces.values():
        if not iface.up:
            continue  # left down on purpose: the book's intermediate states (NO-CARRIER, lo down)
        if iface.name not in created_up:
            plan.add(node.name, f"ip link set {q(iface.name)} up",
                     Netlink(lambda ctx, n=iface.name: rtnl.link_up(ctx.index(n)), RTM_NEWLINK,
                             NLM_F_REQUEST | NLM_F_ACK, needs=(iface.name,)))
    for a in node.addresses:
        brd = " brd +" if ":" not in a.cidr and a.network.prefixlen < 31 else ""
        nodad = " nodad" if a.nodad else ""
        nodad += " noprefixroute" if a.noprefixroute else ""
        plan.add(node.name, f"ip addr add {q(a.cidr)}{brd} dev {q(a.iface)}{nodad}",
                 Netlink(lambda ctx, a=a: rtnl.address(ctx.index(a.iface), a.cidr, a.nodad, a.noprefixroute),
                         RTM_NEWADDR,
                         needs=(a.iface,)))
    # Routes in declaration order (a gateway needs the route that reaches it first),
    # then policy rules, neighbour and FDB entries: each self-describing (wire/routing.py).
    for obj in [*node.routes, *node.rules, *node.neighs, *node.fdbs]:
        plan.add(node.name, routing.ip_text(obj),
                 Netlink(lambda ctx, obj=obj: routing.encode(obj, ctx.index), routing.msg_type(obj),
                         # a delete: no CREATE|EXCL (0x200 is NLM_F_BULK there: EOPNOTSUPP)
                         **({"flags": NLM_F_REQUEST | NLM_F_ACK} if getattr(obj, "delete", False) else {}),
                         needs=routing.needs(obj)))
    if node.ipsets:
        plan.add(node.name, "\n".join(c for s in node.ipsets.values() for c in s.commands()),
                 IPSets(tuple(node.ipsets.values())), "the node's ipsets, before the rules that match them")
    fw = node.firewall
    docs = [doc for kind in firewall_kinds() for doc in kind.commands(fw)]
    if docs:
        text = [f"{cmd} <<'EOF'\n" + doc + "EOF" for cmd, doc in docs]
        plan.add(node.name, "\n".join(text), Firewall(fw), "the node's firewall, one restore per family")
