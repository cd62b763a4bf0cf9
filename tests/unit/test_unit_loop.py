"""nsbox/verify/loop.py, the verifier's one-thread event loop, on socketpairs (no namespaces)."""

from __future__ import annotations

import socket
import time

from nsbox.verify.loop import READ, Loop, Wait, run_one


def _reader(s: socket.socket, until: float):
    try:
        while True:
            try:
                return s.recv(16)
            except BlockingIOError:
                yield Wait(s, READ, until)
    except TimeoutError:
        return "timeout"


def test_a_ready_socket_resumes_its_task_and_a_silent_one_times_out():
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    for s in (a, c):
        s.setblocking(False)
    b.send(b"hi")
    t0 = time.monotonic()
    out = Loop().run([_reader(a, t0 + 5), _reader(c, t0 + 0.2)])
    assert out == [b"hi", "timeout"]
    assert 0.15 < time.monotonic() - t0 < 2  # the silent one waited its own deadline, not the other's
    for s in (a, b, c, d):
        s.close()


def test_all_tasks_wait_at_once_so_n_timeouts_cost_one():
    pairs = [socket.socketpair() for _ in range(20)]
    for s, _ in pairs:
        s.setblocking(False)
    t0 = time.monotonic()
    out = Loop().run([_reader(s, t0 + 0.3) for s, _ in pairs], limit=64)
    assert out == ["timeout"] * 20 and time.monotonic() - t0 < 1.5
    for s, p in pairs:
        s.close(), p.close()


def test_cancel_closes_what_the_task_holds():
    a, b = socket.socketpair()
    a.setblocking(False)

    def task():
        with a:
            yield Wait(a, READ, time.monotonic() + 10)

    loop = Loop()
    h = loop.start(task())
    loop.cancel(h)
    assert h.done and a.fileno() == -1  # closed by the task's own `with`
    loop.close()
    b.close()


def test_a_timer_wait_sleeps_without_error():
    def task():
        yield Wait(None, 0, time.monotonic() + 0.05)
        return "woke"

    assert run_one(task()) == "woke"
