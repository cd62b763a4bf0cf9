"""Link kinds, one module each, registered by kind name.

Why here and not under nsbox/kernel/: a kind is first a part of the model (its
options are validated while the recipe runs, in the recipe jail, where the
kernel is out of reach) and of `nsbox explain` (its `ip` text); the netlink
encoding is one function beside them, importing pyroute2 only when called.
A new kind is one module here (Options dataclass, `options()` validation,
`ip_args()`, `info_data()`, the feature probe's arguments) plus its test: modules
are found by discovery, and the kind's name becomes a kernel feature (model/lab.py FEATURES).
veth and bridge are registered too (options, ip words, probe), but made by their
own builders, lab.veth and node.bridge, which `lab.link("veth"|"bridge", …)` calls.

macvlan, ipvlan and vlan are children of a parent device: like Docker, nsbox
creates them in the parent's namespace and moves them into the child's in the
same request (IFLA_NET_NS_FD), so the name only has to be free in the child.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Callable

from nsbox.errors import ValidationError


@dataclass(frozen=True)
class LinkKind:
    name: str                                   # the kernel's IFLA_INFO_KIND, as `ip link add … type NAME`
    options: Callable[[dict[str, Any]], Any]    # raw options -> validated Options (ValidationError)
    ip_args: Callable[[Any], str]               # Options -> "mode bridge", "id 42 dstport 4789 …"
    info_data: Callable[[Any, Any], list]       # (Options, ctx) -> IFLA_INFO_DATA attrs
    needs_parent: bool = False                  # macvlan, ipvlan, vlan: `link PARENT`
    depends: Callable[[Any], tuple[str, ...]] = lambda o: ()  # other interfaces of the node it needs
    probe: dict[str, Any] | None = None         # pyroute2 IPRoute.link("add", kind=…, **probe)
    # veth and bridge are made by their own builders (lab.veth: a pair across two
    # nodes; node.bridge: before its ports), which lab.link() hands them to.
    builder: str | None = None


KINDS: dict[str, LinkKind] = {}


def register(kind: LinkKind) -> LinkKind:
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> LinkKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValidationError(f"unknown link kind {name!r} (known: {', '.join(sorted(KINDS))})") from None


def known(value: Any, choices: dict[str, Any], what: str) -> Any:
    """CHOICES[VALUE], or a one-line ValidationError listing the choices."""
    if value not in choices:
        raise ValidationError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return choices[value]


def no_extra(kind: str, raw: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ValidationError(f"{kind}: unknown option(s) {', '.join(extra)} (options: {', '.join(sorted(allowed)) or 'none'})")


def ip_text(link: Any, words: str = "") -> str:
    """The `ip` command, run in the node the link is made in (the parent's, for children).
    WORDS: link options (` address MAC mtu N txqueuelen N`, nsbox/model/linkopts.py)."""
    k = get(link.kind)
    q = shlex.quote  # a shell command (`nsbox explain`): names quoted
    out = f"ip link add {q(link.name)}{words}"
    if link.parent:
        out += f" link {q(link.parent[1])}"
        if link.parent[0] != link.node:
            out += f" netns {q(link.node)}"
    args = k.ip_args(link.spec())
    return out + f" type {link.kind}" + (f" {args}" if args else "")


def encode(link: Any, ctx: Any, link_attrs: list | None = None) -> Any:
    """The RTM_NEWLINK request (a pyroute2 ifinfmsg) for LINK. CTX resolves ifindexes in
    the node the request is sent in and opens other nodes' netns fds."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    k = get(link.kind)
    spec = link.spec()
    m = ifinfmsg()
    attrs: list = [("IFLA_IFNAME", link.name)] + list(link_attrs or [])
    if link.parent:
        attrs.append(("IFLA_LINK", ctx.index(link.parent[1])))
        if link.parent[0] != link.node:
            attrs.append(("IFLA_NET_NS_FD", ctx.netns_fd(link.node)))
    info: list = [("IFLA_INFO_KIND", link.kind)]
    data = k.info_data(spec, ctx)
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    m["attrs"] = attrs
    return m


from nsbox.kinds import discover as _discover  # noqa: E402

_discover(__name__)  # every module here registers its kind: no hand list
