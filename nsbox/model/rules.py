"""iptables rule specs as data.

A recipe writes a rule the way `iptables-save` prints it
(`-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`); `parse_rule` turns that into a
`Rule` without touching the kernel, so mistakes surface at validation time, and
`Rule.render()` prints it back in iptables-save's canonical order so the lab's
real `iptables-save` can be compared with the recipe line for line.
"""

from __future__ import annotations

import functools
import ipaddress
import shlex
from dataclasses import dataclass, field

from nsbox.errors import ValidationError
from nsbox.model.names import IFNAMSIZ, control_char, ifname_problem

# Options that take no value (iptables extension flags).
_FLAGS = {
    "random", "random-fully", "persistent", "rsource", "rdest", "set", "rcheck",
    "update", "remove", "reap", "physdev-is-bridged", "physdev-is-in", "physdev-is-out",
    "syn", "fragment", "notrack",
}
# Options that take two values (`--tcp-flags MASK COMP`, `--match-set NAME FLAGS`).
_TWO_VALUES = {"tcp-flags", "match-set"}
# String options iptables-save prints through xtables_save_string(), quoted unless
# they are made only of [A-Za-z0-9_-]; every other value is printed as is.
_STRING_OPTIONS = {"comment", "log-prefix", "nflog-prefix"}
_NO_QUOTE = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

BUILTIN_TARGETS = {
    "ACCEPT", "DROP", "RETURN", "REJECT", "MASQUERADE", "DNAT", "SNAT", "MARK", "LOG",
    "CONNMARK", "NOTRACK", "CT", "TCPMSS", "NFLOG",
}

# -p PROTO loads this match implicitly for options given without -m (libxtables' load_proto)
_IMPLICIT_MATCH = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp", "icmpv6": "icmp6",
                   "ipv6-icmp": "icmp6"}
_PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "ipv6-icmp", "sctp", "all"}  # ip6tables-save prints ipv6-icmp


@dataclass(frozen=True)
class Option:
    name: str  # without the leading "--"
    value: str | None = None
    invert: bool = False

    def render(self) -> str:
        s = f"! --{self.name}" if self.invert else f"--{self.name}"
        if self.value is not None:
            s += " " + (_save_string(self.value) if self.name in _STRING_OPTIONS else self.value)
        return s


@dataclass(frozen=True)
class Module:
    """A match (`-m NAME ...`) or a target (`-j NAME ...`) with its options."""

    name: str
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Negatable:
    value: str
    invert: bool = False

    def render(self, flag: str) -> str:
        return f"! {flag} {self.value}" if self.invert else f"{flag} {self.value}"


@dataclass(frozen=True)
class Rule:
    src: Negatable | None = None
    dst: Negatable | None = None
    in_iface: Negatable | None = None
    out_iface: Negatable | None = None
    proto: Negatable | None = None
    matches: tuple[Module, ...] = ()
    target: Module | None = None
    spec: str = field(default="", compare=False)

    def render(self) -> str:
        """The rule as iptables-save prints it (after `-A CHAIN`). Computed once: parse_rule
        hands out one Rule per distinct text, and kits compare renders often."""
        done = self.__dict__.get("_rendered")
        if done is None:
            done = self._render()
            object.__setattr__(self, "_rendered", done)
        return done

    def _render(self) -> str:
        parts: list[str] = []
        for attr, flag in (("src", "-s"), ("dst", "-d"), ("in_iface", "-i"),
                           ("out_iface", "-o"), ("proto", "-p")):
            v = getattr(self, attr)
            if v is not None:
                parts.append(v.render(flag))
        for m in self.matches:
            parts.append(" ".join([f"-m {m.name}"] + [o.render() for o in m.options]))
        if self.target is not None:
            parts.append(" ".join([f"-j {self.target.name}"] + [o.render() for o in self.target.options]))
        return " ".join(parts)

    @property
    def jumps_to(self) -> str | None:
        return self.target.name if self.target else None


def _save_string(value: str) -> str:
    """Quote like libxtables' xtables_save_string()."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


def _cidr(value: str, spec: str) -> str:
    """Normalize like iptables: host addresses get /32, host bits are masked."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"bad address {value!r} in rule {spec!r}") from None
    return f"{net.network_address}/{net.prefixlen}"


def parse_rule(spec: str, family: int = 4) -> Rule:
    """Parse an iptables rule spec (the part after `-A CHAIN`) of FAMILY (4: iptables,
    6: ip6tables), with its extensions' options as iptables-save prints them back
    (_canonical: defaults spelled out, names as numbers, options in save order).

    Cached: a Rule is immutable, and a Kubernetes lab writes the same kube-proxy rules
    into every node (service-clusterip parsed ~6,500 rule texts for ~1,000 distinct)."""
    if not isinstance(spec, str) or not isinstance(family, int):
        return _parse_rule(spec, family)  # its own error: the cache takes hashable input only
    return _parse_cached(spec, family)


@functools.lru_cache(maxsize=16384)
def _parse_cached(spec: str, family: int) -> Rule:
    return _parse_rule(spec, family)


def _tokens(spec: str) -> list[str]:
    """shlex.split(SPEC); plain printable ASCII without quotes or backslashes -- nearly
    every rule -- is split on spaces directly (shlex was 60 % of parsing a rule)."""
    if spec.isascii() and spec.isprintable() and not any(c in spec for c in "\"'\\"):
        return spec.split()
    try:
        return shlex.split(spec)
    except ValueError as e:
        raise ValidationError(f"cannot parse rule {spec!r}: {e}") from None


def _parse_rule(spec: str, family: int) -> Rule:
    tokens = _tokens(spec)
    if not tokens:
        raise ValidationError("empty iptables rule")
    for tok in tokens:
        if control_char(tok):
            # iptables-restore reads lines: a newline in a value would start a line of its own
            raise ValidationError(f"control character {control_char(tok)!r} in rule {spec!r}")
    base: dict[str, Negatable] = {}
    matches: list[Module] = []
    target: Module | None = None
    current: tuple[str, list[Option]] | None = None  # module being filled
    reopened: int | None = None  # index in matches of the module `current` fills again
    invert = False
    i = 0

    def close() -> None:
        nonlocal current, target, reopened
        if current is None:
            return
        kind, opts = current
        name = kind.split(":", 1)[1]
        mod = _canonical(Module(name, tuple(opts)), kind.startswith("m:"), family)
        if reopened is not None:
            matches[reopened] = mod
            reopened = None
        elif kind.startswith("m:"):
            matches.append(mod)
        else:
            target = mod
        current = None

    def need_value(flag: str) -> str:
        if i + 1 >= len(tokens):
            raise ValidationError(f"option {flag} needs a value in rule {spec!r}")
        return tokens[i + 1]

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            invert = True
            i += 1
            continue
        if tok in ("-s", "--source", "-d", "--destination", "-i", "--in-interface",
                   "-o", "--out-interface", "-p", "--protocol"):
            if current is not None and current[0].startswith("j:"):
                raise ValidationError(f"{tok} after the target in rule {spec!r}")
            close()
            value = need_value(tok)
            key = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
                   "-i": "in_iface", "--in-interface": "in_iface", "-o": "out_iface",
                   "--out-interface": "out_iface", "-p": "proto", "--protocol": "proto"}[tok]
            if key in ("src", "dst"):
                value = _cidr(value, spec)
            elif key == "proto" and value not in _PROTOCOLS:
                raise ValidationError(f"unknown protocol {value!r} in rule {spec!r}")
            elif key in ("in_iface", "out_iface"):
                _check_ifname(value, spec)
            if key in base:
                raise ValidationError(f"{tok} given twice in rule {spec!r}")
            # iptables-save leaves out selectors that match everything.
            if invert or not (value.endswith("/0") or (key == "proto" and value == "all")):
                base[key] = Negatable(value, invert)
            invert = False
            i += 2
            continue
        if tok in ("-m", "--match", "-j", "--jump"):
            if invert:
                raise ValidationError(f"'!' before {tok} in rule {spec!r}")
            if current is not None and current[0].startswith("j:"):
                raise ValidationError(f"{tok} after the target in rule {spec!r}")
            close()
            name = need_value(tok)
            if tok in ("-j", "--jump"):
                if target is not None:
                    raise ValidationError(f"two targets in rule {spec!r}")
                current = (f"j:{name}", [])
            else:
                current = (f"m:{name}", [])
            i += 2
            continue
        if tok.startswith("--"):
            implicit = _IMPLICIT_MATCH.get(base["proto"].value) if "proto" in base and not base["proto"].invert else None
            loaded = next((j for j, m in enumerate(matches) if m.name == implicit), None)
            if current is None and implicit is not None and loaded is not None:
                # `-m tcp -p tcp -d X --dport 80` (kube-proxy's order): the option goes to
                # the tcp match already loaded, which keeps its place
                current, reopened = (f"m:{implicit}", list(matches[loaded].options)), loaded
            elif current is None and implicit is not None:
                # `-p tcp --dport 80`: iptables loads the protocol's match by itself and
                # iptables-save prints it: `-p tcp -m tcp --dport 80`
                current = (f"m:{implicit}", [])
            if current is None:
                raise ValidationError(f"option {tok} outside -m/-j in rule {spec!r}")
            name = tok[2:]
            if name in _FLAGS:
                current[1].append(Option(name, None, invert))
                i += 1
            elif name in _TWO_VALUES:
                if i + 2 >= len(tokens):
                    raise ValidationError(f"option {tok} needs two values in rule {spec!r}")
                current[1].append(Option(name, f"{tokens[i + 1]} {tokens[i + 2]}", invert))
                i += 3
            else:
                current[1].append(Option(name, need_value(tok), invert))
                i += 2
            invert = False
            continue
        raise ValidationError(f"unexpected {tok!r} in rule {spec!r}")
    if invert:
        raise ValidationError(f"dangling '!' in rule {spec!r}")
    close()
    return Rule(matches=tuple(matches), target=target, spec=spec, **base)


# --icmp-type NAME as iptables-save prints it back: TYPE[/CODE] (libxt_icmp's table)
_ICMP_TYPES = {
    "echo-reply": "0", "destination-unreachable": "3", "network-unreachable": "3/0",
    "host-unreachable": "3/1", "protocol-unreachable": "3/2", "port-unreachable": "3/3",
    "fragmentation-needed": "3/4", "source-route-failed": "3/5", "network-unknown": "3/6",
    "host-unknown": "3/7", "network-prohibited": "3/9", "host-prohibited": "3/10",
    "TOS-network-unreachable": "3/11", "TOS-host-unreachable": "3/12", "communication-prohibited": "3/13",
    "host-precedence-violation": "3/14", "precedence-cutoff": "3/15", "source-quench": "4",
    "redirect": "5", "network-redirect": "5/0", "host-redirect": "5/1", "TOS-network-redirect": "5/2",
    "TOS-host-redirect": "5/3", "echo-request": "8", "router-advertisement": "9",
    "router-solicitation": "10", "time-exceeded": "11", "ttl-zero-during-transit": "11/0",
    "ttl-zero-during-reassembly": "11/1", "parameter-problem": "12", "ip-header-bad": "12/0",
    "required-option-missing": "12/1", "timestamp-request": "13", "timestamp-reply": "14",
    "address-mask-request": "17", "address-mask-reply": "18",
}
_RATE_UNITS = {"s": "sec", "sec": "sec", "second": "sec", "m": "min", "min": "min", "minute": "min",
               "h": "hour", "hour": "hour", "d": "day", "day": "day"}
_RECENT_COMMANDS = ("set", "rcheck", "update", "remove")
_RECENT_ORDER = ("set", "rcheck", "update", "remove", "seconds", "reap", "hitcount", "rttl", "name", "mask",
                 "rsource", "rdest")


def _canonical(mod: Module, is_match: bool, family: int) -> Module:
    """MOD's options as iptables-save prints them back, for the extensions whose printing
    differs from what an agent writes (kube-proxy, kube-router): the model holds rules as the
    kernel lists them, so they compare with `iptables-save` and rule references match."""
    opts = list(mod.options)
    if is_match and mod.name == "icmp":
        opts = [Option(o.name, _ICMP_TYPES.get(o.value or "", o.value), o.invert) if o.name == "icmp-type" else o
                for o in opts]
    elif is_match and mod.name == "limit":
        opts = [Option(o.name, _rate(o.value), o.invert) if o.name == "limit" and o.value else o for o in opts]
    elif is_match and mod.name == "recent":
        names = {o.name for o in opts}
        if names & set(_RECENT_COMMANDS):
            if "name" not in names:
                opts.append(Option("name", "DEFAULT"))
            if "mask" not in names:
                opts.append(Option("mask", "255.255.255.255" if family == 4 else "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
            if not names & {"rsource", "rdest"}:
                opts.append(Option("rsource"))
            rank = {n: i for i, n in enumerate(_RECENT_ORDER)}
            opts.sort(key=lambda o: rank.get(o.name, len(rank)))
    elif not is_match and mod.name == "MARK":
        opts = [_xmark(o) if o.name in ("set-mark", "set-xmark") and o.value else o for o in opts]
    elif not is_match and mod.name == "REJECT" and not opts:
        opts = [Option("reject-with", "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable")]
    return Module(mod.name, tuple(opts)) if opts != list(mod.options) else mod


def _rate(value: str) -> str:
    """--limit N/UNIT as libxt_limit prints it (sec, min, hour, day)."""
    n, slash, unit = value.partition("/")
    return f"{n}/{_RATE_UNITS.get(unit, unit)}" if slash else value


def _xmark(o: Option) -> Option:
    """MARK --set-mark V[/M] is saved as --set-xmark V/(V|M) (libxt_MARK rev 2: the mask
    clears what is set); --set-xmark V/M keeps its values. Both in hex, a missing mask all ones."""
    value, _, mask = (o.value or "").partition("/")
    try:
        v = int(value, 0)
        m = int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError:
        return o  # iptables-restore --test says what is wrong with it
    if o.name == "set-mark" and mask:
        m |= v
    return Option("set-xmark", f"{v:#x}/{m:#x}", o.invert)


def _check_ifname(value: str, spec: str) -> None:
    """The kernel's rule, plus iptables': a trailing '+' is a wildcard, and it
    warns about "weird characters" outside letters, digits, '-', '_', '.'."""
    name = value[:-1] if value.endswith("+") else value
    if len(value.encode()) > IFNAMSIZ:
        problem = f"{len(value.encode())} bytes; at most {IFNAMSIZ} (IFNAMSIZ)"
    elif name and ifname_problem(name):
        problem = ifname_problem(name)
    elif not all(c.isalnum() or c in "-_." for c in name):
        problem = "iptables allows letters, digits, '-', '_' and '.'"
    else:
        return
    raise ValidationError(f"bad interface name {value!r} in rule {spec!r}: {problem}")
