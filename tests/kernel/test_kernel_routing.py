"""Routing objects and validation that follows the kernel, against the real kernel.

- Every refusal rule of nsbox/validate_routing.py: validation refuses the lab in
  one line, AND the lab's own `nsbox explain` script, run by bash in a throwaway
  sandbox, has the kernel refuse exactly that command (everything else in the
  script succeeds), with the kernel's own message.
- Things the kernel accepts (the CNI layouts among them): validation accepts them
  and the explained script builds them.
- The two CNI layouts (kindnet/ptp, Calico) built by `nsbox run` carry traffic;
  the state is read back with ip -j / bridge -j; Calico fails without proxy_arp.
- What nsbox's encoder builds equals what the `ip`/`bridge` text builds.
"""

from __future__ import annotations

import json
import shlex
from typing import Callable

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

from nsbox.errors import ValidationError
from nsbox.model import Lab
from tests.support.explain_harness import (assert_accepted_as_the_kernel_accepts,
                                           assert_refused_as_the_kernel_refuses, base_lab,
                                           run_script_and_verify, sandbox)
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ip", "bridge", "unshare")]

RECIPES = str(DATA / "routing")


Case = tuple[str, Callable[[Lab], None], str, tuple[str, ...], str]
# (id, what to add to base_lab(), node, words in nsbox's one-line error, the kernel's (or ip's) message)
REFUSED: list[Case] = [
    ("address-twice", lambda lab: lab.nodes["a"].address("eth0", "10.0.0.2/24"),
     "a", ("10.0.0.2/24", "eth0 twice"), "Address already assigned"),
    ("route-host-bits", lambda lab: lab.nodes["a"].route("10.1.0.1/24", dev="eth0"),
     "a", ("host bits set", "10.1.0.0/24"), "Invalid prefix for given prefix length"),
    ("route-without-gateway-or-device", lambda lab: lab.nodes["a"].route("10.1.0.0/24"),
     "a", ("needs a gateway or a device",), "No such device"),
    ("route-unknown-device", lambda lab: lab.nodes["a"].route("10.1.0.0/24", dev="eth9"),
     "a", ("no device eth9",), 'Cannot find device "eth9"'),
    ("gateway-on-no-link", lambda lab: lab.nodes["a"].route("10.1.0.0/24", via="10.9.9.9"),
     "a", ("gateway 10.9.9.9", "reachable through no"), "Nexthop has invalid gateway"),
    ("gateway-out-of-another-device", lambda lab: lab.nodes["a"].route("10.1.0.0/24", via="10.0.0.1", dev="lo"),
     "a", ("out of lo",), "Nexthop has invalid gateway"),
    ("gateway-behind-a-gateway", lambda lab: lab.nodes["a"].route("10.4.0.0/24", via="10.0.0.1")
     .route("10.5.0.0/24", via="10.4.0.7"),
     "a", ("gateway 10.4.0.7",), "Nexthop has invalid gateway"),
    ("gateway-route-with-scope-link", lambda lab: lab.nodes["a"].route("169.254.1.1/32", dev="eth0", scope="link")
     .route("10.5.0.0/24", via="169.254.1.1", scope="link"),
     "a", ("gateway 169.254.1.1",), "Nexthop has invalid gateway"),
    ("gateway-is-a-broadcast-address", lambda lab: lab.nodes["a"].route("default", via="10.0.0.255"),
     "a", ("broadcast address",), "Nexthop has invalid gateway"),
    ("gateway-with-scope-host", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="10.0.0.1", scope="host"),
     "a", ("scope host cannot have a gateway",), "Route with host scope can not have a gateway"),
    ("onlink-without-device", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="192.0.2.1", onlink=True),
     "a", ("onlink needs a device",), "Nexthop device required for onlink"),
    ("onlink-to-a-local-address", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="10.0.0.2", dev="eth0",
                                                                   onlink=True),
     "a", ("onlink gateway 10.0.0.2",), "Nexthop has invalid gateway"),
    ("src-not-of-this-node", lambda lab: lab.nodes["a"].route("10.5.0.0/24", dev="eth0", src="10.0.0.99"),
     "a", ("src 10.0.0.99 is no address",), "Invalid prefsrc address"),
    ("route-twice", lambda lab: lab.nodes["a"].route("10.5.0.0/24", dev="eth0").route("10.5.0.0/24", via="10.0.0.1"),
     "a", ("two routes to 10.5.0.0/24",), "File exists"),
    ("route-over-the-prefix-route", lambda lab: lab.nodes["a"].route("10.0.0.0/24", dev="eth0"),
     "a", ("two routes to 10.0.0.0/24", "prefix route of address 10.0.0.2/24"), "File exists"),
    ("ipv6-route-twice", lambda lab: lab.nodes["a"].address("eth0", "fd00::2/64").route("fd00:5::/64", dev="eth0")
     .route("fd00:5::/64", dev="eth0"),
     "a", ("two routes to fd00:5::/64", "metric 1024"), "File exists"),
    ("rule-twice-with-one-priority", lambda lab: lab.nodes["a"].rule(100, priority=100, src="10.0.0.0/24")
     .rule(100, priority=100, src="10.0.0.0/24"),
     "a", ("declared twice",), "File exists"),
    ("neighbour-without-lladdr", lambda lab: lab.nodes["a"].neigh("eth0", "10.0.0.50"),
     "a", ("needs an lladdr",), "No link layer address given"),
    ("neighbour-twice", lambda lab: lab.nodes["a"].neigh("eth0", "10.0.0.50", "02:00:00:00:00:50")
     .neigh("eth0", "10.0.0.50", "02:00:00:00:00:51", state="noarp"),
     "a", ("declared twice",), "File exists"),
    ("fdb-master-on-no-port", lambda lab: lab.nodes["a"].fdb("eth0", "02:00:00:00:00:09"),
     "a", ("is no bridge port",), "Operation not supported"),
    ("fdb-twice", lambda lab: lab.host.fdb("p0", "02:00:00:00:00:09").fdb("p0", "02:00:00:00:00:09"),
     "host", ("declared twice",), "File exists"),
    ("fdb-of-the-bridge-not-permanent", lambda lab: lab.host.fdb("br0", "02:00:00:00:00:09", master=False),
     "host", ("must be state='permanent'",), "Invalid argument"),
    ("fdb-self-on-a-veth-not-permanent", lambda lab: lab.nodes["a"].fdb("eth0", "02:00:00:00:00:09", master=False),
     "a", ("must be state='permanent'",), "Invalid argument"),
    ("fdb-with-vlan-without-vlan-filtering", lambda lab: lab.host.fdb("p0", "02:00:00:00:00:09", vlan=5),
     "host", ("vlan needs a VLAN-filtering bridge",), "Invalid argument"),
    ("fdb-all-zero-mac", lambda lab: lab.host.fdb("p0", "00:00:00:00:00:00"),
     "host", ("all-zero MAC",), "Invalid argument"),
    ("sysctl-of-a-missing-interface", lambda lab: lab.nodes["a"].sysctl("net.ipv4.conf.eth9.proxy_arp", 1),
     "a", ("names interface eth9",), "No such file or directory"),
]


@pytest.mark.parametrize("add, node, words, kernel_says", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_validation_refuses_what_the_kernel_refuses(add, node, words, kernel_says, tmp_path):
    lab = base_lab()
    add(lab)
    assert_refused_as_the_kernel_refuses(lab, node, words, kernel_says, tmp_path)


Accepted = tuple[str, Callable[[Lab], None]]
ACCEPTED: list[Accepted] = [
    ("overlapping-subnets-on-two-interfaces", lambda lab: lab.host.bridge("br1", "10.0.0.129/25")),
    ("same-/32-on-two-interfaces", lambda lab: lab.host.bridge("br1", "10.0.0.1/32").bridge("br2", "10.0.0.1/32")),
    ("same-address-in-two-nodes", lambda lab: lab.node("b").address("lo", "10.0.0.2/32")),
    ("gateway-through-a-scope-link-route", lambda lab: lab.nodes["a"].route("169.254.1.1/32", dev="eth0", scope="link")
     .route("default", via="169.254.1.1", dev="eth0")),
    ("gateway-in-table-100-found-in-main", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="10.0.0.1", table=100)),
    ("gateway-is-a-local-address", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="10.0.0.2")),
    ("onlink-gateway-on-no-subnet", lambda lab: lab.nodes["a"].route("10.5.0.0/24", via="192.0.2.1", dev="eth0",
                                                                     onlink=True)),
    ("one-destination-two-metrics", lambda lab: lab.nodes["a"].route("10.5.0.0/24", dev="eth0")
     .route("10.5.0.0/24", via="10.0.0.1", metric=10)),
    ("prefix-route-again-with-a-metric", lambda lab: lab.nodes["a"].route("10.0.0.0/24", dev="eth0", metric=5)),
    ("src-on-another-interface-or-lo", lambda lab: lab.nodes["a"].route("10.5.0.0/24", dev="eth0", src="127.0.0.1")),
    ("rule-on-an-interface-that-does-not-exist", lambda lab: lab.nodes["a"].rule(100, iif="nothere0")),
    ("rule-with-host-bits", lambda lab: lab.nodes["a"].rule(100, src="10.0.0.1/24")),
    ("same-rule-twice-without-priority", lambda lab: lab.nodes["a"].rule(100, src="10.0.0.0/24")
     .rule(100, src="10.0.0.0/24")),
    ("ipv6-default-via-link-local", lambda lab: lab.nodes["a"].route("default", via="fe80::1", dev="eth0")),
    ("ipv6-gateway-through-a-device-route", lambda lab: lab.nodes["a"].route("fd00:9::/64", dev="eth0")
     .route("fd00:10::/64", via="fd00:9::1")),
    ("neighbour-outside-every-subnet", lambda lab: lab.nodes["a"].neigh("eth0", "192.0.2.9", "02:00:00:00:00:09")),
    ("ipv6-link-local-neighbour", lambda lab: lab.nodes["a"].neigh("eth0", "fe80::9", "02:00:00:00:00:09")),
    ("multicast-fdb-entry", lambda lab: lab.host.fdb("p0", "01:00:5e:00:00:01")),
    ("fdb-self-on-a-veth", lambda lab: lab.nodes["a"].fdb("eth0", "02:00:00:00:00:09", master=False,
                                                          state="permanent")),
    ("proxy-arp-on-a-port", lambda lab: lab.host.sysctl("net.ipv4.conf.p0.proxy_arp", 1)
     .sysctl("net.ipv4.neigh.p0.proxy_delay", 0)),
]


@pytest.mark.parametrize("add", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_validation_accepts_what_the_kernel_accepts(add, tmp_path):
    lab = base_lab()
    add(lab)
    assert_accepted_as_the_kernel_accepts(lab, tmp_path)


# -- the CNI layouts, built by nsbox run, with traffic --

def _run(nsbox, recipe: str, then: str, *sets: str):
    args = ["run", recipe, "--recipes", RECIPES, "--format", "json"]
    for s in sets:
        args += ["--set", s]
    return nsbox.run(*args, "--then", then)


def test_kindnet_ptp_one_gateway_address_on_every_host_veth(nsbox, tmp_path):
    out = tmp_path
    run = _run(nsbox, "kindnet-ptp", f"ip -n host -j addr show > {out}/addr.json; "
                                     f"ip -n host -j route show > {out}/host.json; "
                                     f"ip -n pod1 -j route show > {out}/pod1.json")
    assert run.returncode == 0, run.describe()
    assert run.result["status"] == "pass" and all(c["passed"] for c in run.result["checks"]), run.result
    addrs = {i["ifname"]: [(a["local"], a["prefixlen"]) for a in i["addr_info"] if a["family"] == "inet"]
             for i in json.loads((out / "addr.json").read_text())}
    assert addrs["veth1"] == addrs["veth2"] == [("10.244.0.1", 32)], addrs
    host_routes = {(r["dst"], r.get("dev"), r.get("scope")) for r in json.loads((out / "host.json").read_text())}
    assert {("10.244.0.5", "veth1", "host"), ("10.244.0.6", "veth2", "host")} <= host_routes, host_routes
    pod = {r["dst"]: r for r in json.loads((out / "pod1.json").read_text())}
    assert (pod["10.244.0.1"]["scope"], pod["10.244.0.1"]["prefsrc"]) == ("link", "10.244.0.5")
    assert (pod["10.244.0.0/24"]["gateway"], pod["10.244.0.0/24"]["prefsrc"]) == ("10.244.0.1", "10.244.0.5")
    assert pod["default"]["gateway"] == "10.244.0.1"


def test_calico_gateway_answered_by_proxy_arp(nsbox, tmp_path):
    out = tmp_path
    run = _run(nsbox, "calico", f"ip -n pod1 -j route show > {out}/pod1.json; "
                                f"ip -n pod1 -j neigh show 169.254.1.1 > {out}/neigh.json; "
                                f"ip -n host -j link show cali1 > {out}/cali1.json; "
                                f"ip netns exec host cat /proc/sys/net/ipv4/conf/cali1/proxy_arp > {out}/proxy_arp")
    assert run.returncode == 0, run.describe()
    assert run.result["status"] == "pass" and all(c["passed"] for c in run.result["checks"]), run.result
    pod = {r["dst"]: r for r in json.loads((out / "pod1.json").read_text())}
    assert (pod["169.254.1.1"]["dev"], pod["169.254.1.1"]["scope"]) == ("eth0", "link")
    assert (pod["default"]["gateway"], pod["default"]["dev"]) == ("169.254.1.1", "eth0")
    # 169.254.1.1 is nobody's address: the pod learnt the host veth's own MAC for it.
    [neigh] = json.loads((out / "neigh.json").read_text())
    [cali1] = json.loads((out / "cali1.json").read_text())
    assert neigh["lladdr"] == cali1["address"], (neigh, cali1)
    assert (out / "proxy_arp").read_text().strip() == "1"


def test_calico_without_proxy_arp_fails(nsbox):
    """The negative control: the same layout with proxy_arp=0 carries no traffic."""
    run = nsbox.run("run", "calico", "--recipes", RECIPES, "--format", "json", "--set", "proxy_arp=0",
                    "--timeout", "1", "--settle", "0")
    assert run.returncode == 1, run.describe()
    assert not any(c["passed"] for c in run.result["checks"]), run.result


@pytest.mark.parametrize("recipe", ["kindnet-ptp", "calico", "routing-objects"])
def test_explained_routing_recipes_rebuild_by_hand(nsbox, recipe, tmp_path):
    explained = nsbox.run("explain", recipe, "--recipes", RECIPES)
    assert explained.returncode == 0, explained.describe()
    done = run_script_and_verify(explained.stdout, recipe, tmp_path, recipes_dir=RECIPES)
    assert done.returncode == 0, f"{explained.stdout}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.splitlines() and all(line.startswith("PASS ") for line in done.stdout.splitlines())


# -- what the encoder builds equals what the text builds --

DUMPS = {
    "routes": "ip -n a -j route show table all",
    "routes6": "ip -n a -j -6 route show table all",
    "rules": "ip -n a -j rule show",
    "neigh": "ip -n a -j neigh show nud permanent nud noarp",
    "proxy": "ip -n a -j neigh show proxy",
    "fdb": "bridge -n host -j fdb show",
}


def _normal(name: str, text: str) -> list:
    items = json.loads(text or "[]")
    if name == "fdb":  # only the entries the recipe declares (the kernel adds its own)
        items = [i for i in items if i["mac"].startswith("02:00:00:00:aa:")]
    if name == "neigh":  # IPv6 multicast entries the kernel makes for MLD
        items = [i for i in items if not i["dst"].startswith("ff")]
    if name == "routes6":  # kernel-made link-local and multicast routes come and go with DAD
        items = [i for i in items if i.get("protocol") != "kernel" and i.get("type") != "multicast"]
    for i in items:
        i.pop("expires", None)
        i.pop("flags", None) if name.startswith("routes") and i.get("flags") == [] else None
    return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))


def test_encoder_and_ip_text_build_the_same_kernel_state(nsbox, tmp_path):
    (tmp_path / "nsbox").mkdir()
    (tmp_path / "byhand").mkdir()
    dump = "; ".join(f"{cmd} > {{d}}/{name}.json" for name, cmd in DUMPS.items())
    run = _run(nsbox, "routing-objects", dump.format(d=tmp_path / "nsbox"))
    assert run.returncode == 0, run.describe()
    assert run.result["status"] == "pass", run.result
    explained = nsbox.run("explain", "routing-objects", "--recipes", RECIPES)
    assert explained.returncode == 0, explained.describe()
    done = sandbox(explained.stdout + "\n" + dump.format(d=tmp_path / "byhand") + "\n", tmp_path)
    assert done.returncode == 0, done.stderr
    for name in DUMPS:
        ours = _normal(name, (tmp_path / "nsbox" / f"{name}.json").read_text())
        theirs = _normal(name, (tmp_path / "byhand" / f"{name}.json").read_text())
        assert ours == theirs, f"{name}:\nnsbox: {ours}\nip:    {theirs}"

    got = {n: _normal(n, (tmp_path / "nsbox" / f"{n}.json").read_text()) for n in DUMPS}
    table100 = [r for r in got["routes"] if r.get("table") == "100"]
    assert [(r["dst"], r["dev"], r["prefsrc"]) for r in table100] == [("10.60.0.0/24", "eth0", "10.1.0.1")]
    metrics = {(r.get("metric", 0), r["protocol"]) for r in got["routes"] if r["dst"] == "10.80.0.0/24"}
    assert metrics == {(50, "static"), (100, "bird")}, metrics
    [onlink] = [r for r in got["routes"] if r["dst"] == "10.70.0.0/24"]
    assert onlink["gateway"] == "10.99.0.1" and "onlink" in onlink["flags"], onlink
    rules = {r["priority"]: r for r in got["rules"]}
    assert (rules[1000]["dst"], rules[1000]["dstlen"], rules[1000]["table"]) == ("10.60.0.0", 24, "100")
    assert (rules[1001]["src"], rules[1001]["iif"], rules[1001]["fwmark"], rules[1001]["fwmask"]) == \
        ("10.1.0.1", "lo", "0x10", "0xff")
    assert {(n["dst"], n["lladdr"], tuple(n["state"])) for n in got["neigh"]} == \
        {("10.1.0.77", "02:00:00:00:00:77", ("PERMANENT",)), ("10.1.0.78", "02:00:00:00:00:78", ("NOARP",))}
    assert [n["dst"] for n in got["proxy"]] == ["10.1.0.79"]
    [r6] = [r for r in got["routes6"] if r["dst"] == "fd00:60::/64"]
    assert (r6["gateway"], r6["metric"]) == ("fd00:1::2", 300)
    fdb = {f["mac"]: f for f in got["fdb"]}
    assert fdb["02:00:00:00:aa:01"]["ifname"] == "pa" and fdb["02:00:00:00:aa:01"]["state"] == "static"
    assert fdb["02:00:00:00:aa:02"]["state"] == "permanent"
    assert fdb["02:00:00:00:aa:03"]["ifname"] == "br0"


def test_the_pre_build_sysctl_probe_takes_per_interface_conf_and_neigh_keys():
    """check_lab writes each key in a throwaway netns first: per-interface conf keys on
    'default', neigh keys on lo (a netns has no net.ipv4.neigh.default)."""
    from nsbox.kernel.sysctl import check_lab

    lab = base_lab()
    lab.host.sysctl("net.ipv4.conf.p0.proxy_arp", 1).sysctl("net.ipv4.neigh.p0.proxy_delay", 0)
    check_lab(lab)
    lab.host.sysctl("net.ipv4.neigh.p0.proxy_delay", "banana")
    with pytest.raises(ValidationError, match="net.ipv4.neigh.p0.proxy_delay=banana: the kernel refuses it"):
        check_lab(lab)
