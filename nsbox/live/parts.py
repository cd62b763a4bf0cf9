"""Labs across machines: `nsbox up RECIPE --part NODE… --underlay IFACE|ADDR`.

A part is the piece of a lab one host builds: the named machines (a Kubernetes node
with its pods, an "outside" machine), or nodes of no machine. Everything else of the
lab is built by other hosts, or by nobody (the node network's switch is the hosts'
own network now).

The wire between two machines is a veth pair from a machine's interface (a node's
eth0) to a node outside the part (the switch). In a part that interface is no veth:
it is an *underlay* interface, a macvlan child of the host's real NIC that `up`
creates (mode bridge, a name of its own, refused if taken), the holder moves into
the node's namespace and renames (eth0) before the rest of the lab is built. The
NIC itself is never touched. The child dies with the node's namespace: with the
sandbox when the holder dies (the kernel removes virtual devices of a namespace
that goes away), with the named namespace when an --on-host lab is torn down.

Checks: a check whose ends are all in the part runs as in the whole lab. A reach
check that leaves from the part to a node of another part still runs ("cross"):
its destination becomes that node's address (declared virtual: served elsewhere),
and what only the far server sees (seen_from, answered_by) is not judged here.
Every other check belongs to another part and is left out; `up` and `verify` say
how many and why (`skipped`).
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field

from nsbox.errors import UsageError
from nsbox.model import Lab
from nsbox.model.checks import ConntrackCheck, ReachCheck
from nsbox.model.lab import HOST, Interface

UNDERLAY = "underlay"  # Interface.kind of a node's interface that is a child of the host's NIC
PREFIX = "nsbu"        # the name a child gets on the host before the holder takes it


@dataclass(frozen=True)
class Crossing:
    """NODE's interface IFNAME was a wire to PEER (outside the part): it becomes an underlay."""

    node: str
    ifname: str
    peer: str


@dataclass
class Part:
    names: tuple[str, ...]
    nodes: frozenset[str]
    crossings: list[Crossing] = field(default_factory=list)
    cross: list[str] = field(default_factory=list)    # checks run reach-only (the far end is elsewhere)
    skipped: list[str] = field(default_factory=list)  # checks of other parts

    def summary(self) -> list[str]:
        """What this part checks, in lines of at most 80 columns with nsbox's prefix."""
        out = [f"part {' '.join(self.names)} ({len(self.nodes)} nodes)"[:72]]
        if self.cross:
            out.append(f"  {len(self.cross)} checks to other parts: reach only (their server is there)")
        if self.skipped:
            out.append(f"  {len(self.skipped)} checks left to the parts that hold their ends")
        return out


def select(lab: Lab, names: tuple[str, ...]) -> frozenset[str]:
    """The nodes of the machines (or nodes) NAMES: a node of a machine brings the whole machine."""
    out: set[str] = set()
    machines = {m.name: m for m in lab.machines}
    for name in names:
        if name in machines:
            out.update(machines[name].nodes)
        elif name in lab.nodes and name != HOST:
            m = lab.machine_of(name)
            out.update(machines[m].nodes if m else (name,))
        else:
            known = ", ".join(m.name for m in lab.machines) or ", ".join(n for n in lab.nodes if n != HOST)
            raise UsageError(f"--part {name}: no machine or node of {lab.name} is called that (it has: {known})")
    return frozenset(out)


def split(lab: Lab, names: tuple[str, ...]) -> tuple[Lab, Part]:
    """LAB cut down to the part NAMES: its nodes, the host node, their links; every wire to a
    node outside the part an underlay interface; the checks this part can run."""
    if not names:
        raise UsageError("--part needs one or more machines or nodes")
    keep = select(lab, names) | {HOST}
    part = Part(tuple(names), frozenset(keep - {HOST}))
    out = copy.deepcopy(lab)
    for pair in lab.veths:
        a_in, b_in = pair.a_node in keep, pair.b_node in keep
        if a_in != b_in:
            node, ifname, peer = ((pair.a_node, pair.a_name, pair.b_node) if a_in else
                                  (pair.b_node, pair.b_name, pair.a_node))
            if node == HOST:
                raise UsageError(f"--part {' '.join(names)}: the lab's host node is wired to {peer}, "
                                 f"which is not in the part; the host cannot be split")
            part.crossings.append(Crossing(node, ifname, peer))
            iface = out.nodes[node].interfaces[ifname]
            out.nodes[node].interfaces[ifname] = Interface(ifname, UNDERLAY, mtu=iface.mtu, up=iface.up)
    out.veths = [p for p in lab.veths if p.a_node in keep and p.b_node in keep]
    for link in lab.links:
        if (link.node in keep) != (link.made_in in keep):
            raise UsageError(f"--part {' '.join(names)}: {link.kind} {link.name} of {link.node} is made on "
                             f"{link.made_in}; both must be in the part")
    out.links = [l for l in lab.links if l.node in keep]
    out.nodes = {n: node for n, node in out.nodes.items() if n in keep}
    out.containers = {c: v for c, v in out.containers.items() if v.node in keep}
    out.machines = [m for m in out.machines if set(m.nodes) <= keep]
    out.sandboxes = [s for s in out.sandboxes if s in keep]
    out.virtuals = [v for v in out.virtuals if v.node is None or v.node in keep]
    out.matrices = [m for m in out.matrices if set(m.nodes) <= keep]
    out.checks = _checks(lab, out, keep, part)
    return out, part


def _owner(lab: Lab, name: str) -> str | None:
    """The node (netns) behind a node, container or address; None for a virtual one."""
    if name in lab.nodes or name in lab.containers:
        return lab.netns_of(name).name
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    owner = lab.owner_of(name)
    return owner.name if owner else None


def _checks(lab: Lab, out: Lab, keep: set[str], part: Part) -> list:
    kept: list = []
    names: set[str] = set()
    for c in lab.checks:
        where = set()
        for f in ("src", "node", "container", "held_by"):
            v = getattr(c, f, None)
            if isinstance(v, str):
                where.add(_owner(lab, v) or v)
        for f in ("dropped_by", "counted_by"):
            v = getattr(c, f, None)
            if v:
                where.add(v[0])
        if isinstance(c, ConntrackCheck) and c.of not in names:
            where.add("")  # its probe is not this part's
        if hasattr(c, "probes") and not set(c.probes) <= names:
            where.add("")
        if not where <= keep:
            part.skipped.append(c.name)
            continue
        if isinstance(c, ReachCheck):
            dst = _owner(lab, c.dst)
            if dst is not None and dst not in keep:
                ip = c.dst if dst != c.dst and c.dst not in lab.containers else lab.resolve(c.dst, c.family)[1]
                if not any(v.ip == ip and v.port is None for v in out.virtuals):
                    out.virtual(ip, name=f"{c.dst} (in another part)" if ip != c.dst else None)
                c = dataclasses.replace(c, dst=ip, seen_from=None, answered_by=None, family=None)
                part.cross.append(c.name)
        kept.append(c)
        names.add(c.name)
    return kept


# --------------------------------------------------------------------------- the host's side

def underlay_device(spec: str) -> str:
    """--underlay IFACE|ADDR -> the name of an interface of this (the real) host: IFACE
    itself, or the one that holds ADDR. It must exist; it is only ever a parent."""
    import socket

    from pyroute2 import IPRoute

    try:
        ipaddress.ip_address(spec)
        by_addr = True
    except ValueError:
        by_addr = False
    with IPRoute() as ip:
        if by_addr:
            found = ip.get_addr(address=spec)
            if not found:
                raise UsageError(f"--underlay {spec}: no interface of this host holds that address")
            name = ip.get_links(found[0]["index"])[0].get_attr("IFLA_IFNAME")
        else:
            if not spec or len(spec.encode()) > 15 or "/" in spec or spec.strip() != spec:
                raise UsageError(f"--underlay {spec!r}: not an interface name")
            try:
                socket.if_nametoindex(spec)
            except OSError:
                raise UsageError(f"--underlay {spec}: this host has no such interface (ip link lists them)") from None
            name = spec
    if name == "lo":
        raise UsageError("--underlay: the loopback cannot carry a lab between hosts")
    return name


def parse_underlays(specs: tuple[str, ...], crossings: list[Crossing]) -> dict[Crossing, str]:
    """--underlay values -> the host interface each crossing's child is made on. A plain
    IFACE|ADDR serves every crossing; NODE=IFACE|ADDR one node's."""
    if crossings and not specs:
        wires = ", ".join(f"{c.node}/{c.ifname}" for c in crossings)
        raise UsageError(f"the part meets the rest of the lab through {wires}: give --underlay IFACE|ADDR "
                         f"(the host's interface on the network between the hosts)")
    default, per_node = None, {}
    for s in specs:
        if "=" in s:
            node, _, dev = s.partition("=")
            if not any(c.node == node for c in crossings):
                raise UsageError(f"--underlay {s}: {node} has no wire out of the part")
            per_node[node] = underlay_device(dev)
        elif default is None:
            default = underlay_device(s)
        else:
            raise UsageError("--underlay: one IFACE|ADDR for all, or NODE=IFACE|ADDR per node")
    out = {}
    for c in crossings:
        dev = per_node.get(c.node, default)
        if dev is None:
            raise UsageError(f"--underlay: none given for {c.node}/{c.ifname}")
        out[c] = dev
    return out


@dataclass
class Children:
    """The macvlan children `up` made on the host: name -> ifindex, removed by index if
    they are still here (a holder that failed before taking them)."""

    made: dict[str, int] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # --underlay-link NODE:IFNAME=CHILD for the holder

    def remove_leftovers(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        with IPRoute() as ip:
            for name, index in self.made.items():
                try:
                    found = ip.get_links(index)
                except NetlinkError:
                    continue  # gone with its namespace, or moved into the lab: not here any more
                if found and found[0].get_attr("IFLA_IFNAME") == name:
                    ip.link("del", index=index)
        self.made.clear()


def make_children(devices: dict[Crossing, str]) -> Children:
    """A macvlan child (mode bridge) of each crossing's host interface, under a fresh name;
    NLM_F_EXCL: a name taken is an error, never someone else's link."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    kids = Children()
    try:
        with IPRoute() as ip:
            for i, (c, dev) in enumerate(devices.items()):
                name = f"{PREFIX}{os.getpid():x}{i}"[:15]
                parent = ip.link_lookup(ifname=dev)
                if not parent:
                    raise UsageError(f"--underlay {dev}: the interface went away")
                try:
                    ip.link("add", ifname=name, kind="macvlan", link=parent[0], macvlan_mode="bridge")
                except NetlinkError as e:
                    raise UsageError(f"--underlay {dev}: cannot make a macvlan child on it: {e.args[1]}") from None
                kids.made[name] = ip.link_lookup(ifname=name)[0]
                kids.args += ["--underlay-link", f"{c.node}:{c.ifname}={name}"]
    except BaseException:
        kids.remove_leftovers()
        raise
    return kids


def hand_over(kids: Children, pid: int) -> None:
    """Move the children into the sandbox of PID (its network namespace), where the holder
    waits for them."""
    from pyroute2 import IPRoute

    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with IPRoute() as ip:
            for index in kids.made.values():
                ip.link("set", index=index, net_ns_fd=fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the holder's side

def parse_links(values: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """--underlay-link NODE:IFNAME=CHILD -> {(node, ifname): child}."""
    out = {}
    for v in values:
        left, _, child = v.partition("=")
        node, _, ifname = left.partition(":")
        if not (node and ifname and child.startswith(PREFIX) and len(child) <= 15):
            raise UsageError(f"--underlay-link {v!r}: expected NODE:IFNAME={PREFIX}…")
        out[(node, ifname)] = child
    return out


def wait_for(children: list[str], timeout: float = 10.0) -> None:
    """In the holder: the children `up` moves here after the sandbox exists."""
    import socket

    from nsbox import retry

    def missing() -> list[str]:
        out = []
        for name in children:
            try:
                socket.if_nametoindex(name)
            except OSError:
                out.append(name)
        return out

    tried = retry.until(missing, lambda left: not left, within=timeout, every=0.02)
    if not tried.ok:
        from nsbox.errors import KernelError
        raise KernelError(f"the underlay interfaces {', '.join(tried.value)} did not arrive")


def realize_part(lab: Lab, links: dict[tuple[str, str], str], prefix: str, journal_path: str | None):
    """realize() with one more step once the namespaces exist: each underlay child moves
    from the holder's namespace into its node, under its name there (eth0)."""
    from pyroute2 import IPRoute

    from nsbox.kernel.realize import realize

    wanted = {(n, i.name) for n, node in lab.nodes.items() for i in node.interfaces.values() if i.kind == UNDERLAY}
    if wanted != set(links):
        raise UsageError("the underlay links given do not match the part's wires")
    wait_for(list(links.values()))

    def move_underlays(done) -> None:
        with IPRoute() as ip:
            for (node, ifname), child in links.items():
                fd = os.open(done.path(node), os.O_RDONLY)
                try:
                    ip.link("set", index=ip.link_lookup(ifname=child)[0], net_ns_fd=fd, ifname=ifname)
                finally:
                    os.close(fd)

    return realize(lab, prefix, journal_path, namespaces_made=move_underlays)


def split_validated(lab: Lab, names: tuple[str, ...]) -> tuple[Lab, Part]:
    """split(), the part checked again as any lab is before the kernel is touched."""
    from nsbox.errors import ValidationError
    from nsbox.validate import validate

    out, part = split(lab, names)
    try:
        validate(out)
    except ValidationError as e:
        raise UsageError(f"--part {' '.join(names)}: {e}") from None
    return out, part
