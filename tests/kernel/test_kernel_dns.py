"""DNS servers and probes against the real kernel: Docker's embedded DNS rebuilt
(tests/data/dns/dns.py), observed with dig, and its DNAT taken away (a mutation)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("dig")]

RECIPES = str(DATA / "dns")
DIG = ("dig +short +time=1 +tries=1 @127.0.0.11 c2; echo; "
       "dig +time=1 +tries=1 @127.0.0.11 c9 | grep -o 'status: [A-Z]*'")


def test_embedded_dns_answers_through_dockers_nat_chains(nsbox):
    r = nsbox.run("run", "embedded-dns", "--recipes", RECIPES, "--format", "json", "--then-in", "c1", "--then", DIG)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert checks["dns c1: c2"]["observed"] == "answer 172.18.0.3"
    assert checks["dns c1: c9 (on no network of c1)"]["observed"] == "NXDOMAIN"
    assert checks["dns c1: c2"]["answered_by"] == "dockerd-dns"
    # dig, not nsbox: the same answers from 127.0.0.11:53 inside c1
    assert re.search(r"^172\.18\.0\.3$", r.stderr, re.M), r.stderr
    assert "status: NXDOMAIN" in r.stderr


def test_without_the_dnat_port_53_is_closed(nsbox):
    r = nsbox.run("run", "embedded-dns", "--recipes", RECIPES, "--set", "dnat=0", "--timeout", "0.3", "--settle", "0.5",
                  "--format", "json", "--then-in", "c1", "--then", DIG)
    assert r.returncode == 1, r.describe()
    for name in ("dns c1: c2", "dns c1: web (alias)", "dns c1: c9 (on no network of c1)"):
        c = r.checks()[name]
        assert not c["passed"] and c["observed"] == "deny" and "refused" in c["detail"], c
    assert "172.18.0.3" not in r.stderr.split("Running")[-1].split("\n", 1)[-1]  # dig got no answer either


def test_a_server_on_an_address_the_netns_lacks_the_kernel_refuses_it_too():
    code = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n    s.bind(('10.1.2.3', 53))\nexcept OSError as e:\n    print(e.errno)\n")
    p = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && python3 -c \"{code}\""],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout.strip() == "99", p  # EADDRNOTAVAIL
    # with lo down (no local routes) this kernel lets the bind pass; validation follows
    p = subprocess.run(["unshare", "--net", "python3", "-c", code], capture_output=True, text=True, timeout=20)
    assert p.stdout.strip() in ("", "99"), p
