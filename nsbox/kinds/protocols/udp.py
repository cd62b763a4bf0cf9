"""udp: send a token datagram to PORT, expect it echoed (a udp server answers).

Connected UDP: an ICMP error (port unreachable, a REJECT) surfaces as an exception,
its type and code read from the socket's error queue."""

from __future__ import annotations

import socket

from nsbox.kinds.protocols import Protocol, Serving, register


def probe(src, ip, port, timeout, token, opts):
    import time

    from nsbox.verify import probes as P
    from nsbox.verify.servers import ECHO_PREFIX

    assert port is not None
    msg = ECHO_PREFIX + token.encode()
    try:
        with P.sock(src, P.family(ip), socket.SOCK_DGRAM) as s:
            s.connect((ip, port))  # connected UDP: ICMP errors surface as exceptions
            P.recverr(s)  # ... and queue their type and code
            local = s.getsockname()[:2]
            try:
                s.send(msg)
                deadline = time.monotonic() + timeout
                while True:
                    if (yield from P.recv(s, 65535, deadline)) == msg:
                        return P.ProbeResult(True, "echoed", token, local)
            except (TimeoutError, socket.timeout) as e:
                return P.error(e, token)
            except OSError as e:
                return P.error(e, token, s)
    except OSError as e:
        return P.error(e, token)


def echo(server, s: socket.socket, node: str) -> None:
    payload, peer = s.recvfrom(65535)
    server.record(payload, peer, node)
    s.sendto(payload, peer)


PROTOCOL = register(Protocol(
    name="udp", transport="udp", summary="send a datagram, expect it echoed (udp server)",
    probe=probe, answers=("udp",), serving=Serving(socket.SOCK_DGRAM, on_datagram=echo)))
