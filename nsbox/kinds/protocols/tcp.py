"""tcp: connect to PORT, send a token line, expect it echoed.

Passes when the connection is made and the line comes back (a tcp or an http server
answers: the http server echoes a line that is no HTTP request). The server records
the peer of the first chunk, which carries the token."""

from __future__ import annotations

import socket

from nsbox.kinds.protocols import Protocol, Serving, register


def stream_probe(ip_proto: int = 0):
    """The echo probe over a stream socket of IP_PROTO (0: TCP; sctp uses it too)."""

    def probe(src, ip, port, timeout, token, opts):
        import time

        from nsbox.verify import probes as P
        from nsbox.verify.servers import ECHO_PREFIX

        assert port is not None
        try:
            with P.sock(src, P.family(ip), socket.SOCK_STREAM, ip_proto) as s:
                P.recverr(s)
                try:
                    yield from P.connect(s, (ip, port), timeout)
                except OSError as e:
                    return P.error(e, token, s)
                local = s.getsockname()[:2]
                msg = ECHO_PREFIX + token.encode() + b"\n"
                yield from P.send(s, msg, timeout)
                got = b""
                until = time.monotonic() + timeout
                while len(got) < len(msg):
                    chunk = yield from P.recv(s, len(msg) - len(got), until)
                    if not chunk:
                        break
                    got += chunk
        except OSError as e:
            return P.error(e, token)
        if got != msg:
            return P.ProbeResult(False, "connected, but no echo", token, local)
        return P.ProbeResult(True, "connected, echoed", token, local)

    return probe


def echo(server, s: socket.socket, c, chunk: bytes) -> None:
    """The echo server's side of a connection: record the peer once, echo everything."""
    if not c.buf:
        server.record(chunk, c.peer, c.node)
    c.buf = b"-"  # only the first chunk carries the token
    s.sendall(chunk)


PROTOCOL = register(Protocol(
    name="tcp", transport="tcp", summary="connect and echo a line (tcp or http server)",
    probe=stream_probe(), answers=("tcp", "http"),
    serving=Serving(socket.SOCK_STREAM, on_data=echo)))
