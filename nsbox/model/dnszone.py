"""A DNS server's zone: the records it answers, of several types (what a cluster DNS such
as CoreDNS's kubernetes plugin serves: A, AAAA, CNAME, SRV, PTR, TXT).

A record is a (name, value) pair; a name may have several. The value is either a bare
IPv4 address (an A record, what `serve_dns` has always taken: Docker's embedded DNS) or
"TYPE RDATA" as a zone file writes it:

    ("web.default.svc.cluster.local", "A 10.96.0.11")
    ("_http._tcp.web.default.svc.cluster.local", "SRV 0 100 80 web.default.svc.cluster.local.")
    ("11.0.96.10.in-addr.arpa", "PTR web.default.svc.cluster.local.")
    ("ext.default.svc.cluster.local", "CNAME www.example.com.")

Answers follow RFC 1034 §4.3.2 as far as a flat zone needs: the records of the asked
type (ANY: all); a name holding a CNAME answers any other type with the CNAME, followed
through the zone; a name the zone holds with no record of that type answers NOERROR with
no answer (NODATA), which resolvers (glibc asks A and AAAA at once) need to tell apart
from NXDOMAIN; any other name NXDOMAIN.

Imported by the server process before it forks (servers.py): dnslib only inside functions.
"""

from __future__ import annotations

import ipaddress
import re

TYPES = ("A", "AAAA", "CNAME", "SRV", "PTR", "TXT")
TTL_BARE = 600  # bare A records: Docker's embedded DNS
TTL = 30        # typed records: kubeadm's Corefile (`ttl 30`)
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"^({_LABEL}\.)*{_LABEL}\.?$")


class ZoneError(ValueError):
    """A record that is not one (the caller names where it came from)."""


def is_name(name: str) -> bool:
    return len(name) <= 253 and bool(_NAME.match(name))


def check(name: str, value: str) -> None:
    """Raise ZoneError unless (NAME, VALUE) is a record this module can serve."""
    if not is_name(name):
        raise ZoneError(f"{name!r} is not a DNS name")
    typ, _, data = value.partition(" ")
    if not data:
        _ip(value, 4)
        return
    fields = data.split()
    if typ == "A":
        _ip(data, 4)
    elif typ == "AAAA":
        _ip(data, 6)
    elif typ in ("CNAME", "PTR"):
        if len(fields) != 1 or not is_name(data):
            raise ZoneError(f"{typ} {data!r}: not a DNS name")
    elif typ == "SRV":
        if len(fields) != 4 or not all(f.isdigit() and int(f) <= 65535 for f in fields[:3]) \
                or not is_name(fields[3]):
            raise ZoneError(f"SRV {data!r}: PRIORITY WEIGHT PORT TARGET")
    elif typ == "TXT":
        if len(data) > 255 or not data.isprintable():
            raise ZoneError(f"TXT {data!r}: printable, at most 255 characters")
    else:
        raise ZoneError(f"record type {typ!r} is not one of {', '.join(TYPES)}")


def _ip(s: str, version: int) -> None:
    try:
        if ipaddress.ip_address(s).version == version:
            return
    except ValueError:
        pass
    raise ZoneError(f"{s!r} is not an IPv{version} address")


def build(records: tuple[tuple[str, str], ...] | dict[str, str]) -> dict[str, list[str]]:
    """RECORDS -> {lower-case name without the final dot: its values in order}."""
    items = records.items() if isinstance(records, dict) else records
    zone: dict[str, list[str]] = {}
    for name, value in items:
        zone.setdefault(name.rstrip(".").lower(), []).append(value)
    return zone


def _rr(qname, value: str):
    from dnslib import AAAA, CNAME, PTR, QTYPE, RR, SRV, TXT, A

    typ, _, data = value.partition(" ")
    if not data:
        return RR(qname, QTYPE.A, rdata=A(value), ttl=TTL_BARE)
    if typ == "A":
        return RR(qname, QTYPE.A, rdata=A(data), ttl=TTL)
    if typ == "AAAA":
        return RR(qname, QTYPE.AAAA, rdata=AAAA(data), ttl=TTL)
    if typ == "CNAME":
        return RR(qname, QTYPE.CNAME, rdata=CNAME(data), ttl=TTL)
    if typ == "PTR":
        return RR(qname, QTYPE.PTR, rdata=PTR(data), ttl=TTL)
    if typ == "SRV":
        prio, weight, port, target = data.split()
        return RR(qname, QTYPE.SRV, rdata=SRV(int(prio), int(weight), int(port), target), ttl=TTL)
    return RR(qname, QTYPE.TXT, rdata=TXT(data), ttl=TTL)


def _type(value: str) -> str:
    typ, _, data = value.partition(" ")
    return typ if data else "A"


def answer(request, zone: dict[str, list[str]]) -> None:
    """Fill the reply to REQUEST (a dnslib DNSRecord) from ZONE; the reply is request.reply()."""
    from dnslib import QTYPE, RCODE

    reply = request.reply()
    q = request.q
    qtype = QTYPE.get(q.qtype)
    name = str(q.qname).rstrip(".").lower()
    qname = q.qname
    if name not in zone:
        reply.header.rcode = RCODE.NXDOMAIN
        return reply
    for _ in range(8):  # a CNAME chain inside the zone, not a loop
        values = zone.get(name, [])
        cname = [v for v in values if _type(v) == "CNAME"]
        if cname and qtype not in ("CNAME", "ANY"):
            reply.add_answer(_rr(qname, cname[0]))
            qname = cname[0].partition(" ")[2]
            name = qname.rstrip(".").lower()
            continue
        for v in values:
            if qtype == "ANY" or _type(v) == qtype:
                reply.add_answer(_rr(qname, v))
        break
    return reply
