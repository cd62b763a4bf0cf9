"""dns: one A query over UDP, as a resolver sends it (lab.expect_dns).

The check names the query and the answer it must get (an address, or None for
NXDOMAIN); it passes on that answer, not on reachability alone. The server answers
A records from its zone (lab.serve_dns) and NXDOMAIN for names it lacks, as Docker's
embedded DNS does once it has no upstream. A query carries no token: the server
records it under the client's address and port ("dns:IP:PORT")."""

from __future__ import annotations

import socket

from nsbox.kinds.protocols import Protocol, Serving, register
from nsbox.errors import ValidationError


def probe(src, ip, port, timeout, token, opts):
    """body = the first A record, or ''. detail: "A <ip>", "NXDOMAIN", "no A record" or how it failed."""
    import time

    from dnslib import QTYPE, RCODE, DNSRecord

    from nsbox.verify import probes as P

    from nsbox.model.dnszone import TYPES

    assert opts.query is not None and port is not None
    # QUERY is a name (an A query; body = the first A record, or '') or "TYPE name" (TYPE
    # one of dnszone.TYPES; body = every record of that type, sorted, joined by ', ')
    qtype, _, typed = opts.query.partition(" ")
    if not typed or qtype not in TYPES:
        qtype, typed = "A", ""
    q = DNSRecord.question(typed or opts.query, qtype)
    try:
        with P.sock(src, P.family(ip), socket.SOCK_DGRAM) as s:
            s.connect((ip, port))
            local = s.getsockname()[:2]
            s.send(q.pack())
            deadline = time.monotonic() + timeout
            while True:
                data, peer = yield from P.recvfrom(s, deadline)
                try:
                    reply = DNSRecord.parse(data)
                except Exception:  # noqa: BLE001 - not a DNS reply: keep waiting
                    continue
                if reply.header.id != q.header.id:
                    continue
                break
    except OSError as e:
        return P.error(e, token)
    if reply.header.rcode == RCODE.NXDOMAIN:
        return P.ProbeResult(True, f"NXDOMAIN from {peer[0]}:{peer[1]}", token, local, "")
    answers = [str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype)]
    if not answers:
        return P.ProbeResult(True, f"no {qtype} record ({RCODE.get(reply.header.rcode)}) from {peer[0]}:{peer[1]}",
                             token, local, "")
    body = ", ".join(sorted(answers)) if typed else answers[0]
    return P.ProbeResult(True, f"{qtype} {body} from {peer[0]}:{peer[1]}", token, local, body)


def token_of(p) -> str:
    """What the server recorded this query under: the client's address and port."""
    return f"dns:{p.local[0]}:{p.local[1]}" if p.local else p.token


def expected(c) -> str:
    return f"answer {c.answer}" if c.answer else "NXDOMAIN"


def judge(c, p) -> tuple[str, bool]:
    got = f"answer {p.body}" if p.body else ("NXDOMAIN" if p.detail.startswith("NXDOMAIN") else "no A record")
    return got, got == c.expected


def check(lab, c, where: str) -> None:
    if c.query is None:
        raise ValidationError(f"{where}: a dns check asks for a name (lab.expect_dns)")


def serve(server, s: socket.socket, node: str) -> None:
    from nsbox.verify.servers import unmapped

    payload, peer = s.recvfrom(65535)
    reply = answer(payload, server.zones.get(s.fileno(), {}))
    if reply is not None:
        ip = unmapped(peer[0])
        server.write_record(f"dns:{ip}:{peer[1]}", (ip, peer[1]), node)
        s.sendto(reply, peer)


def answer(query: bytes, zone: dict[str, str] | dict[str, list[str]]) -> bytes | None:
    """The reply to a DNS query: records from ZONE (name -> IPv4 address, or name -> the
    values dnszone.build makes: A, AAAA, CNAME, SRV, PTR, TXT), NXDOMAIN for names it lacks
    (as Docker's embedded DNS does for names outside the container's networks, once it has
    no upstream). None for what is not a DNS query."""
    from dnslib import DNSRecord
    from dnslib.dns import DNSError

    from nsbox.model import dnszone

    try:
        request = DNSRecord.parse(query)
    except (DNSError, Exception):  # noqa: BLE001 - anything unparsable is not ours to answer
        return None
    if any(isinstance(v, str) for v in zone.values()):
        zone = dnszone.build(zone)  # type: ignore[arg-type]
    return dnszone.answer(request, zone).pack()  # type: ignore[arg-type]


PROTOCOL = register(Protocol(
    name="dns", transport="udp", summary="ask for a name's A record, expect the answer (dns server)",
    probe=probe, answers=("dns",), serving=Serving(socket.SOCK_DGRAM, on_datagram=serve),
    options=frozenset({"query", "answer"}), check=check, plain=False, token_of=token_of, judge=judge,
    expected=expected, conntrack=False, imports=("dnslib",)))
