"""expect_listening against the real kernel (tests/data/listening/): the check kind added as
one module (nsbox/kinds/checks/listening.py).

Independent observer: `ss -Hltnu` in the node's netns (sock_diag netlink; nsbox reads the
/proc/net socket tables instead). Mutations: the server moved off tcp/7 fails the two tcp/7
checks, and ss shows nothing on :7; a server on tcp/8 fails the "nothing on tcp/8" check;
the DNS server bound to another address fails the address check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support import paths

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("ss")]

RECIPES = str(paths.DATA / "listening")
TCP7 = ["tcp/7 listening in a", "tcp/7 on 10.91.0.2 (the wildcard takes it)"]


def _run(nsbox, tmp_path, *args: str):
    return nsbox.run("run", "listening", "--recipes", RECIPES, "--format", "json", "--timeout", "0.5",
                     *args, "--then", f"ss -Hltnu > {tmp_path}/ss.txt", "--then-in", "a", timeout=120)


def _ss(tmp_path) -> set[tuple[str, str, int]]:
    """(proto, local address, port) of every listening socket ss printed."""
    out = set()
    for line in (tmp_path / "ss.txt").read_text().splitlines():
        f = line.split()
        addr, _, port = f[4].rpartition(":")
        out.add((f[0], re.sub(r"%.*$", "", addr.strip("[]")), int(port)))
    return out


def test_listening_checks_pass_and_ss_agrees(nsbox, tmp_path):
    r = _run(nsbox, tmp_path)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert all(c["passed"] for c in checks.values()), checks
    assert {c["kind"] for n, c in checks.items() if n != "tcp/7 b->a"} == {"listening"}
    ss = _ss(tmp_path)
    assert any(p == "tcp" and port == 7 and a in ("*", "0.0.0.0", "::") for p, a, port in ss), ss
    assert ("udp", "127.0.0.53", 53) in ss, ss
    assert not any(port == 8 for _, _, port in ss), ss


def test_the_server_moved_away_fails_the_check(nsbox, tmp_path):
    r = _run(nsbox, tmp_path, "--set", "mutant=1")
    assert r.returncode == 1, r.describe()
    checks = r.checks()
    assert sorted(n for n, c in checks.items() if not c["passed"]) == sorted(TCP7), checks
    assert checks[TCP7[0]]["observed"] == "nothing listening on tcp/7"
    ss = _ss(tmp_path)
    assert not any(p == "tcp" and port == 7 for p, _, port in ss), ss  # the kernel agrees: nothing on 7
    assert any(p == "tcp" and port == 9 for p, _, port in ss), ss


def test_a_server_where_none_may_be_fails_listening_false(nsbox, tmp_path):
    r = _run(nsbox, tmp_path, "--set", "mutant=2")
    assert r.returncode == 1, r.describe()
    checks = r.checks()
    assert [n for n, c in checks.items() if not c["passed"]] == ["nothing on tcp/8 in a"], checks
    assert any(p == "tcp" and port == 8 for p, _, port in _ss(tmp_path))


def test_a_bind_to_another_address_fails_the_address_check(nsbox, tmp_path):
    r = _run(nsbox, tmp_path, "--set", "mutant=3")
    assert r.returncode == 1, r.describe()
    checks = r.checks()
    assert [n for n, c in checks.items() if not c["passed"]] == ["dns on 127.0.0.53"], checks
    ss = _ss(tmp_path)
    assert ("udp", "127.0.0.54", 53) in ss and ("udp", "127.0.0.53", 53) not in ss, ss
