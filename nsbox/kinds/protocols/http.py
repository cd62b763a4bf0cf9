"""http: GET /host, expect HTTP 200 (the body is the server's `NODE: <node>, POD IP:<ip>`).

The server (as the book's web server) answers `GET /` with Hello, `GET /host` with
its node and address, `GET /source` with the client address it saw; it records the
peer under the probe's X-Nsbox-Probe header. A plain tcp probe of an http port is
echoed, as an echo server would."""

from __future__ import annotations

import socket

from nsbox.kinds.protocols import Protocol, Serving, get, register

_MAX_REQUEST = 16384


def probe(src, ip, port, timeout, token, opts):
    import time

    from nsbox.verify import probes as P
    from nsbox.verify.servers import TOKEN_HEADER

    assert port is not None
    host = f"[{ip}]" if ":" in ip else ip
    req = (f"GET /host HTTP/1.0\r\nHost: {host}:{port}\r\n{TOKEN_HEADER}: {token}\r\n"
           f"User-Agent: nsbox\r\n\r\n").encode()
    try:
        with P.sock(src, P.family(ip), socket.SOCK_STREAM) as s:
            P.recverr(s)
            try:
                yield from P.connect(s, (ip, port), timeout)
            except OSError as e:
                return P.error(e, token, s)
            local = s.getsockname()[:2]
            yield from P.send(s, req, timeout)
            data = b""
            while True:
                chunk = yield from P.recv(s, 4096, time.monotonic() + timeout)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return P.error(e, token)
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0]
    code = status.split()[1] if len(status.split()) > 1 else "?"
    return P.ProbeResult(code == "200", f"HTTP {code}", token, local, body.strip())


def on_data(server, s: socket.socket, c, chunk: bytes) -> None:
    from nsbox.verify.servers import ECHO_PREFIX

    c.buf += chunk
    if c.buf.startswith(ECHO_PREFIX[: len(c.buf)]):
        if len(c.buf) < len(ECHO_PREFIX):
            return
        # A plain TCP probe of an HTTP port: answer it as an echo server would.
        c.kind, buf, c.buf = "tcp", c.buf, b""
        get("tcp").serving.on_data(server, s, c, buf)
        return
    if b"\r\n\r\n" not in c.buf and len(c.buf) < _MAX_REQUEST:
        return
    s.setblocking(True)
    s.settimeout(1.0)
    s.sendall(reply(server, c))
    server.drop(s)


def reply(server, c) -> bytes:
    from nsbox.verify.servers import TOKEN_HEADER

    head = c.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split()
    path = parts[1] if len(parts) > 1 else "/"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == TOKEN_HEADER.lower():
            server.write_record(value.strip(), c.peer, c.node)
    if path == "/":
        status, body = "200 OK", "Hello\n"
    elif path == "/host":
        status, body = "200 OK", f"NODE: {c.node}, POD IP:{c.ip}\n"
    elif path == "/source":
        status, body = "200 OK", f"{c.peer[0]}:{c.peer[1]}\n"
    else:
        status, body = "404 Not Found", "not found\n"
    return (f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}").encode()


PROTOCOL = register(Protocol(
    name="http", transport="tcp", summary="GET /host, expect HTTP 200 (http server)",
    probe=probe, answers=("http",), serving=Serving(socket.SOCK_STREAM, on_data=on_data)))
