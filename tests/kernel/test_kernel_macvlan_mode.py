"""macvlan-mode against the real kernel, in every mode, with independent observers.

The verdicts are the kernel's macvlan driver's: ping (iputils, not nsbox) from the host,
the LAN machine and the containers agrees with every check; `ip -j -d link` shows each
container's eth0 is a macvlan child in the mode asked for. The host's deny is shown to
be the path's, not the address's: with the shim (bridge mode) the same probe passes.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT), pytest.mark.tools("ping")]

C1, C2 = "192.168.50.10", "192.168.50.11"

PINGS = ('p() { if ip netns exec "$1" ping -c1 -W1 "$2" >/dev/null 2>&1; then echo "PING $3 ok"; '
         'else echo "PING $3 fail"; fi; }; '
         f'p $NSBOX_NETNS_HOST {C1} host-c1; p $NSBOX_NETNS_LANHOST {C1} lanhost-c1; '
         f'[ -n "$NSBOX_NETNS_C2" ] && p $NSBOX_NETNS_C1 {C2} c1-c2; '
         'echo "LINK $(ip netns exec $NSBOX_NETNS_C1 ip -j -d link show eth0)"')

# (sets, expected pings: host->c1, lanhost->c1, c1->c2 or None for passthru)
CASES = [
    (("mode=bridge",), (False, True, True)),
    (("mode=private",), (False, True, False)),
    (("mode=vepa",), (False, True, False)),
    (("mode=vepa", "hairpin=true"), (True, True, True)),
    # a hairpin switch hands the host's own frames back through the parent: the driver
    # takes them for the wire's and delivers them to c1 in bridge and private mode too
    (("mode=bridge", "hairpin=true"), (True, True, True)),
    (("mode=private", "hairpin=true"), (True, True, False)),
    (("mode=bridge", "shim=true"), (True, True, True)),
    (("mode=private", "shim=true"), (False, True, False)),
    (("mode=passthru",), (False, True, None)),
]


@pytest.mark.parametrize("sets, pings", CASES, ids=["+".join(s) for s, _ in CASES])
def test_macvlan_mode(nsbox, sets, pings):
    args = [a for s in sets for a in ("--set", s)]
    r = nsbox.run("run", "macvlan-mode", *args, "--timeout", "0.3", "--format", "json", "--then", PINGS)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.result["checks"]), r.describe()
    seen = dict(re.findall(r"^PING (\S+) (ok|fail)$", r.stderr, re.M))
    want = dict(zip(("host-c1", "lanhost-c1", "c1-c2"), pings))
    for pair, ok in want.items():
        if ok is None:
            assert pair not in seen
        else:
            assert seen[pair] == ("ok" if ok else "fail"), (pair, r.stderr)
    # the verdicts in nsbox's report agree with ping's
    checks = r.checks()
    host_check = next(c for n, c in checks.items() if n.startswith("tcp/7 host->c1"))
    assert host_check["observed"] == ("allow" if pings[0] else "deny (unreachable)")
    if not pings[0]:  # proven by the kernel's verdict (no ARP answer), not by a timeout
        assert "host unreachable" in host_check["detail"] and host_check["duration_ms"] < 300, host_check
    link = json.loads(re.search(r"^LINK (.*)$", r.stderr, re.M).group(1))[0]
    mode = dict(s.split("=") for s in sets)["mode"]
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == mode


def test_macvlan_mode_on_host(nsbox):
    r = nsbox.run("run", "macvlan-mode", "--on-host", "--timeout", "0.3", "--format", "json")
    assert r.returncode == 0, r.describe()


def test_8021q_variant_skips_with_the_reason(nsbox):
    r = nsbox.run("run", "macvlan-mode", "--set", "vlan=50", "--format", "json")
    if r.returncode == 0:
        pytest.skip("this kernel has 8021q: the variant ran and passed")
    assert r.returncode == 4, r.describe()
    assert "vlan" in r.result["skip_reason"]


def test_passthru_with_a_shim_is_refused_like_the_kernel_does(nsbox):
    r = nsbox.run("run", "macvlan-mode", "--set", "mode=passthru", "--set", "shim=true")
    assert r.returncode == 2, r.describe()
    assert len(r.stderr.splitlines()) == 1 and "passthru takes the parent over" in r.stderr
    p = subprocess.run(["unshare", "--net", "sh", "-c",
                        "ip link add p type veth peer q && ip link add m1 link p type macvlan mode passthru "
                        "&& ip link add m2 link p type macvlan mode passthru"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "Invalid argument" in p.stderr, p
