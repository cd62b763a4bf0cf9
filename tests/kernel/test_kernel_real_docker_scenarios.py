"""nsbox's docker=20.10 beside the real dockerd 20.10 in eight more scenarios (issue 14):
a UDP port, a port range, a port on 127.0.0.1, a port on the uplink address, a port
published on a user network (port-publish), two user networks + --internal + docker0,
the same with icc=false, and containers on docker0 and two user networks (user-networks).

For each, the real dockerd (tests/support/realdocker/, in a throwaway namespace) is driven with
the docker commands the recipe stands for, bridges named as nsbox names them
(`-o com.docker.network.bridge.name`), and:

- rules: the real host's iptables-save and nsbox's (from inside its live lab, same
  iptables-save) are equal table by table, every rule in the order the daemon wrote it;
- reachability: the recipe's own checks (its probe matrix), run by nsbox's verifier
  against the real containers' namespaces (verify/external.py) and by `nsbox run`,
  pass on both sides with the same verdict.
"""

from __future__ import annotations

import copy
import difflib
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from nsbox.recipe import get
from nsbox.verify.external import select, verify_external
from tests.support.realdocker.dockerd import RealDocker, cgroup_dirs, flavour_of, start_or_skip
from tests.support.realdocker.normalize import normalize
from tests.support.saves import tables_in_order

pytestmark = [pytest.mark.kernel]

UPLINK = "203.0.113.2"


def _net(d: RealDocker, name: str, subnet: str, *opts: str) -> None:
    d.docker("network", "create", "--subnet", subnet, "-o", f"com.docker.network.bridge.name=br-{name}",
             *opts, name)
    # the real "internet" routes only docker0's subnet via the host: as the recipe's does, all of them
    d.in_netns("internet", "ip", "route", "replace", subnet, "via", UPLINK)


def _publish(spec: str, user: bool = False) -> Callable[[RealDocker], None]:
    def setup(d: RealDocker) -> None:
        net: tuple[str, ...] = ()
        if user:
            _net(d, "pubnet", "172.18.0.0/16")
            net = ("--network", "pubnet")
        d.run("c1", *net, "-p", spec)
        d.run("c2", *net)
    return setup


def _user_networks(icc: bool = True, docker0: bool = False) -> Callable[[RealDocker], None]:
    def setup(d: RealDocker) -> None:
        _net(d, "front", "172.18.0.0/16", *(() if icc else ("-o", "com.docker.network.bridge.enable_icc=false")))
        _net(d, "back", "172.19.0.0/16")
        _net(d, "vault", "172.20.0.0/16", "--internal")
        d.run("a1", "--network", "front")
        d.run("a2", "--network", "front", "--network-alias", "web")
        d.run("b1", "--network", "back")
        d.run("i1", "--network", "vault")
        d.run("i2", "--network", "vault")
        if docker0:
            d.run("d1")
    return setup


# scenario -> (recipe, its --set, what a user types on the real Docker)
SCENARIOS: dict[str, tuple[str, tuple[str, ...], Callable[[RealDocker], None]]] = {
    "udp": ("port-publish", ("proto=udp",), _publish("8080:80/udp")),
    "range": ("port-publish", ("range=true",), _publish("8080-8081:80-81")),
    "loopback-bind": ("port-publish", ("bind=loopback",), _publish("127.0.0.1:8080:80")),
    "uplink-bind": ("port-publish", ("bind=uplink",), _publish(f"{UPLINK}:8080:80")),
    "user-network-publish": ("port-publish", ("network=user",), _publish("8080:80", user=True)),
    "two-networks-internal": ("user-networks", (), _user_networks()),
    "two-networks-icc-false": ("user-networks", ("icc=false",), _user_networks(icc=False)),
    "docker0-and-two-networks": ("user-networks", ("docker0=true",), _user_networks(docker0=True)),
}


@pytest.fixture(scope="module")
def real(kernel):
    if os.geteuid() != 0:
        pytest.skip("needs root: starts dockerd")
    d = start_or_skip(preload=True, userland_proxy=True)
    cgroup = d.cgroup_parent
    yield d
    problems = d.stop()
    assert not problems, problems
    assert not cgroup_dirs(cgroup), cgroup_dirs(cgroup)


def _for_the_real_system(lab):
    """The recipe's lab as the real system runs it: Docker's own processes answer there,
    so nsbox's stand-ins for them (docker-proxy, the embedded DNS's resolver and its name
    server on 127.0.0.11) are not started in the real namespaces."""
    lab = copy.deepcopy(lab)
    for node in lab.nodes.values():
        node.proxies = []
        node.servers = [s for s in node.servers if not (s.kind == "dns" and s.address == "127.0.0.11")]
    return lab


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rules_and_reachability_equal_the_real_dockerd(real: RealDocker, nsbox, tmp_path: Path, scenario: str):
    recipe, sets, setup = SCENARIOS[scenario]
    sets = ("docker=20.10", *sets)
    real.remove_all()
    setup(real)
    try:
        # rules, in the daemon's order
        tool = "iptables-legacy-save" if flavour_of(subprocess.run(["iptables", "-V"], capture_output=True,
                                                                     text=True).stdout) == "legacy" \
            else "iptables-nft-save"
        out = tmp_path / "host.rules"
        args = [a for kv in sets for a in ("--set", kv)]
        run = nsbox.run("run", recipe, *args, "--timeout", "0.5", "--format", "json", "--then", f"{tool} > {out}")
        real_rules = real.iptables_save()
        want, got = tables_in_order(normalize(real_rules)), tables_in_order(normalize(out.read_text()))
        assert got == want, "".join(difflib.unified_diff(
            [f"{t}: {ln}\n" for t in sorted(want) for ln in want[t]],
            [f"{t}: {ln}\n" for t in sorted(got) for ln in got[t]], "real dockerd 20.10", f"nsbox {recipe}"))
        # reachability: the recipe's checks on both
        assert run.returncode == 0, run.describe()
        ours = run.checks()
        lab = get(recipe).build(dict(kv.split("=", 1) for kv in sets))
        names = [c.name for c in lab.checks] + [m.cell_name(a, b) for m in lab.matrices for a, b, _ in m.cells]
        results = verify_external(_for_the_real_system(select(lab, names)), real.netns_map(),
                                  iptables=real.flavour, rules={"host": real_rules})
        table = "\n".join(f"  {r.name:60} real: {'ok ' if r.passed else 'BAD'} {r.observed:50} "
                          f"nsbox: {ours[r.name]['observed']}" for r in results)
        assert all(r.passed for r in results), table
        assert all(r.observed.split(",")[0] == ours[r.name]["observed"].split(",")[0] for r in results), table
    finally:
        real.remove_all()
