"""ipsets as the policy agents use them: named sets of addresses, networks or address,port
pairs that iptables rules match with `-m set --match-set NAME src|dst` (kube-router's
KUBE-SRC-*/KUBE-DST-* hash:ip and hash:net sets, Calico Felix's cali40* sets).

A set belongs to one node: ipsets live in a network namespace (net/netfilter/ipset/
ip_set_core.c keeps them per netns), so a lab's sets go when its namespace does. The
model is plain data and checks here what `ipset` would refuse; the node's sets are
created in its netns (kernel/ipset.py, one `ipset restore`) before its iptables restore,
which the kernel refuses while a rule names a set that does not exist.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nsbox.errors import ValidationError

# The set types nsbox builds (ipset(8) TYPES; what kube-router and Felix create).
TYPES = ("hash:ip", "hash:net", "hash:ip,port", "hash:net,port")
FAMILIES = ("inet", "inet6")
MAXNAMELEN = 31  # IPSET_MAXNAMELEN 32, with the trailing NUL
# What a name may hold: the characters ipset restore and iptables-save pass through unquoted
# (kube-router's KUBE-SRC-<base32>, Felix's cali40masq-ipam-pools, TMP- sets).
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")
_PORT_PROTOS = ("tcp", "udp", "sctp")


@dataclass
class IPSet:
    """`ipset create NAME TYPE family FAMILY` and one `ipset add NAME ENTRY` per entry.
    ENTRIES are written as ipset prints them in `ipset list`: "10.0.1.2" (hash:ip),
    "10.0.0.0/16" or "10.0.9.0/24 nomatch" (hash:net), "10.0.1.2,tcp:80" (…,port)."""

    name: str
    type: str
    family: str = "inet"
    entries: list[str] = None  # type: ignore[assignment]  (set by __post_init__)

    def __post_init__(self) -> None:
        self.entries = list(self.entries or [])

    def create_text(self) -> str:
        return f"create {self.name} {self.type} family {self.family}"

    def add_texts(self) -> list[str]:
        return [f"add {self.name} {e}" for e in self.entries]

    def commands(self) -> list[str]:
        """What a person types: `ipset create …` then `ipset add …` per entry."""
        return ["ipset " + line for line in (self.create_text(), *self.add_texts())]

    def restore_lines(self) -> list[str]:
        """The same as `ipset restore` input (one batch, one netlink session)."""
        return [self.create_text(), *self.add_texts()]


def check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}: an ipset needs a name")
    if len(name.encode()) > MAXNAMELEN or not _NAME_RE.match(name):
        raise ValidationError(f"{where}: bad ipset name {name!r} (1-{MAXNAMELEN} characters of "
                              f"letters, digits, '_', '.', ':', '+', '-'; not starting with '-')")
    return name


def _address(text: str, family: str, what: str, *, network: bool) -> str:
    version = 4 if family == "inet" else 6
    try:
        value = ipaddress.ip_network(text, strict=True) if network else ipaddress.ip_address(text)
    except ValueError:
        kind = "network (ADDRESS/PREFIX, host bits zero)" if network else "address"
        raise ValidationError(f"{what}: {text!r} is no IPv{version} {kind}") from None
    if value.version != version:
        raise ValidationError(f"{what}: {text!r} is not IPv{version} (the set's family is {family})")
    if network and value.prefixlen == 0:
        # ipset: "Zero valued IP address is not allowed" / hash:net refuses /0
        raise ValidationError(f"{what}: {text!r}: a hash:net set does not take a /0 network")
    return str(value)


def check_entry(s: IPSet, entry: object, where: str) -> str:
    """ENTRY in the canonical form ipset lists it, or ValidationError naming what is wrong."""
    what = f"{where}: ipset {s.name} ({s.type}) entry"
    if not isinstance(entry, str) or not entry.strip():
        raise ValidationError(f"{what}: {entry!r} is no entry")
    words = entry.split()
    nomatch = words[1:] == ["nomatch"]
    if len(words) > 1 and not nomatch:
        raise ValidationError(f"{what}: {entry!r}: only 'nomatch' may follow the element")
    if nomatch and not s.type.startswith("hash:net"):
        raise ValidationError(f"{what}: {entry!r}: nomatch is for hash:net sets only")
    element, port = words[0], None
    if s.type.endswith(",port"):
        if "," not in element:
            raise ValidationError(f"{what}: {entry!r} needs ADDRESS,PORT or ADDRESS,PROTO:PORT")
        element, port = element.split(",", 1)
        proto, _, number = port.rpartition(":")
        proto = proto or "tcp"
        if proto not in _PORT_PROTOS or not number.isdigit() or not 0 <= int(number) <= 65535:
            raise ValidationError(f"{what}: {entry!r}: port must be PORT or PROTO:PORT "
                                  f"({'/'.join(_PORT_PROTOS)}, 0-65535)")
        port = f"{proto}:{int(number)}"
    if s.type.startswith("hash:net"):
        net = _address(element if "/" in element else
                       f"{element}/{32 if s.family == 'inet' else 128}", s.family, what, network=True)
        element = net
        if net.endswith("/32") or net.endswith("/128"):
            element = net.rsplit("/", 1)[0]  # ipset lists a host network as the bare address
    else:
        element = _address(element, s.family, what, network=False)
    return element + (f",{port}" if port else "") + (" nomatch" if nomatch else "")


def make(name: object, type: object, entries: object, family: object, where: str) -> IPSet:
    """A checked IPSet (entries canonical, no duplicates), or ValidationError."""
    check_name(name, where)
    if type not in TYPES:
        raise ValidationError(f"{where}: ipset {name}: type must be one of {', '.join(TYPES)}, not {type!r}")
    if family not in FAMILIES:
        raise ValidationError(f"{where}: ipset {name}: family must be inet or inet6, not {family!r}")
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__iter__"):
        raise ValidationError(f"{where}: ipset {name}: entries must be a list of strings")
    s = IPSet(str(name), str(type), str(family))
    seen: set[str] = set()
    for e in entries:  # type: ignore[union-attr]
        canon = check_entry(s, e, where)
        key = canon.split()[0]
        if key in seen:
            # ipset add without -exist: "Element cannot be added to the set: it's already added"
            raise ValidationError(f"{where}: ipset {name}: entry {key} given twice")
        seen.add(key)
        s.entries.append(canon)
    return s


def match_sets(spec_modules) -> list[tuple[str, str]]:
    """(set name, flags) of every `-m set --match-set NAME FLAGS` in a rule's modules."""
    out = []
    for m in spec_modules:
        for o in m.options:
            if o.name == "match-set" and o.value:
                name, _, flags = o.value.partition(" ")
                out.append((name, flags))
    return out
