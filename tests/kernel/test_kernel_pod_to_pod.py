"""The pod-to-pod recipe in the kernel, per CNI layout, and its mutants.

- Every layout (cni=bridge, cni=bridge masq=cni, cni=ptp): all checks pass (pods reach
  pods on their node and across nodes seen from their own address, pod->outside seen
  from node1's address, conntrack's reply tuple to node1); node1's nat table read by
  iptables-save from inside the live lab equals the model's; `ip -j` shows the layout:
  bridge: veths on cni0 with hairpin on (`bridge -j link`); ptp: the gateway /32 on
  every host veth, pod /32 routes scope host, and in the pod no kernel prefix route but
  `10.244.1.0/24 via 10.244.1.1`.
- Mutants (recipes of their own name that load pod_to_pod.py and take one piece away):
  ptp without its route dance in pod n1-p1 (the kernel's prefix route kept) fails the
  same-node checks from n1-p1 and the route check; each layout with a RETURN ahead of its
  MASQUERADE rule fails pod->outside (the outside has no route back) and its conntrack
  check, the first naming the RETURN as the rule that counted instead (counted_by).
- pod: both containers' listeners in one netns (ss there), lo+eth0 only; portmap's chains;
  without portmap's DNAT exactly the hostPort check fails.
- hostport (bridge, ptp): outside keeps its address, node1->127.0.0.1, a neighbour pod and
  the pod itself are masqueraded to 10.244.1.1, node2's pod arrives as node2; mutants:
  route_localnet=0 fails exactly the 127.0.0.1 check, the hairpin mark removed fails
  exactly the neighbour and hairpin checks.
- cni=vxlan (flannel): all checks pass; node2's raw-table counter sees pod pings from node1
  as UDP 8472 from node1, each 50 bytes bigger (VXLAN); a 1450-byte don't-fragment ping
  passes, 1451 does not; `ip -j -d link`, `bridge -j fdb`, `ip -j neigh`, `ip -j route` show
  flannel.1 as flanneld makes it. Mutant: node1 without its FDB entry fails exactly the
  pairs across nodes.
- cni=calico: all checks pass; the pod's neighbour entry for 169.254.1.1 holds the cali
  veth's ee:ee:ee:ee:ee:ee (learnt by proxy ARP); node1's block blackholed, node2's via BGP
  (proto bird). Mutant: proxy_arp off on node1's veths fails exactly the traffic from or to
  node1's pods and the expect_neigh check for 169.254.1.1; a RETURN ahead of Felix's
  MASQUERADE fails pod->outside as for the other layouts.
- vxlan MTU mutants: every 1450 made 1400 fails exactly the 1450-byte echo; the overlay at
  1500 on a 1600-byte node network fails exactly the 1451-byte deny (`ping -M do` agrees).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import textwrap

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections as _sections
from tests.support.golden import parse_save
from tests.support.mutants import failed_checks, run_mutant

from nsbox.kinds.firewalls.xtables import restore_text

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save", "ip", "bridge")]

DUMP = ('echo "@@ nat"; ip netns exec $NSBOX_NETNS_NODE1 iptables-save -t nat; '
        'echo "@@ addr"; ip -n $NSBOX_NETNS_NODE1 -j addr show; '
        'echo "@@ route"; ip -n $NSBOX_NETNS_NODE1 -j route show; '
        'echo "@@ brlink"; bridge -n $NSBOX_NETNS_NODE1 -j -d link show; '
        'echo "@@ podroute"; ip -n $NSBOX_NETNS_N1_P1 -j route show')

MUTANT = """
    @recipe("pod-to-pod-mut-{tag}")
    def build(lab):
        '''pod-to-pod with one piece of its layout taken away.'''
        _p2p.build(lab, cni={cni!r}, masq={masq!r})
        if {noroute}:
            # ptp's route dance undone in n1-p1: the kernel's prefix route stays, no SUBNET via GW.
            pod = lab.nodes["n1-p1"]
            pod.routes[:] = [r for r in pod.routes if not (r.delete or r.dst == "10.244.1.0/24")]
        if {nomasq}:
            # the CNI's MASQUERADE made not to match the outside: a RETURN ahead of it
            nat = lab.nodes["node1"].iptables("nat")
            for chain in list(nat.chains.values()):
                if not chain.name.startswith("KUBE-") and any(r.jumps_to == "MASQUERADE" for r in chain.rules):
                    nat.insert(chain.name, "-d 192.168.70.200/32 -j RETURN", 1)
"""


LAYOUTS = [("bridge", "auto"), ("bridge", "cni"), ("ptp", "auto")]


@pytest.mark.parametrize("cni,masq", LAYOUTS, ids=["bridge", "bridge-masq-cni", "ptp"])
def test_pod_to_pod_layout(nsbox, cni: str, masq: str) -> None:
    from nsbox.recipe import get

    r = nsbox.run("run", "pod-to-pod", "--set", f"cni={cni}", "--set", f"masq={masq}", "--format", "json",
                  "--then", DUMP, timeout=180)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert checks and all(c["passed"] for c in checks.values()), r.describe()
    across = [c for n, c in checks.items() if "across nodes" in n]
    assert len(across) == 8
    d = _sections(r.stderr)
    lab = get("pod-to-pod").build({"cni": cni, "masq": masq})
    kernel = parse_save(d["nat"])["nat"]
    want = parse_save(restore_text(lab.nodes["node1"].firewall, 4))["nat"]
    assert [ln.replace('"', "") for ln in kernel] == [ln.replace('"', "") for ln in want]
    chains = {ln.split()[0] for ln in kernel if ln.startswith(":")}
    expected_chain = {"auto": "FLANNEL-POSTRTG" if cni == "bridge" else "KIND-MASQ-AGENT", "cni": None}[masq]
    if expected_chain:
        assert f":{expected_chain}" in chains, chains
    else:
        assert sum(1 for c in chains if re.fullmatch(r":CNI-[0-9a-f]{24}", c)) == 2, chains
    addrs = {i["ifname"]: [(a["local"], a["prefixlen"]) for a in i["addr_info"] if a["family"] == "inet"]
             for i in json.loads(d["addr"])}
    pod_routes = {r_["dst"]: r_ for r_ in json.loads(d["podroute"])}
    if cni == "bridge":
        assert addrs["cni0"] == [("10.244.1.1", 24)], addrs
        ports = [p for p in json.loads(d["brlink"]) if p.get("master") == "cni0"]
        assert len(ports) == 2 and all(p["hairpin"] for p in ports), ports
        assert pod_routes["10.244.1.0/24"].get("protocol") == "kernel", pod_routes
        assert pod_routes["10.244.0.0/16"]["gateway"] == "10.244.1.1"
    else:
        veths = [n for n in addrs if n.startswith("veth")]
        assert len(veths) == 2 and all(addrs[v] == [("10.244.1.1", 32)] for v in veths), addrs
        node_routes = {(x["dst"], x.get("scope")) for x in json.loads(d["route"])}
        assert {("10.244.1.2", "host"), ("10.244.1.3", "host")} <= node_routes, node_routes
        assert pod_routes["10.244.1.0/24"].get("protocol") != "kernel", pod_routes
        assert (pod_routes["10.244.1.0/24"]["gateway"], pod_routes["10.244.1.0/24"]["prefsrc"]) == \
            ("10.244.1.1", "10.244.1.2")
        assert pod_routes["10.244.1.1"]["scope"] == "link"


def _mutant(nsbox, tmp_path: Path, tag: str, cni: str, masq: str = "auto", noroute: bool = False,
            nomasq: bool = False):
    return run_mutant(nsbox, tmp_path, f"pod-to-pod-mut-{tag}",
                      MUTANT.format(tag=tag, cni=cni, masq=masq, noroute=noroute, nomasq=nomasq),
                      base="pod_to_pod.py", alias="_p2p")


def test_ptp_without_its_route_fails(nsbox, tmp_path) -> None:
    r = _mutant(nsbox, tmp_path, "ptp-noroute", "ptp", noroute=True)
    assert r.returncode == 1, r.describe()
    failed = failed_checks(r)
    # n1-p1 thinks n1-p2 is on its link: ARP for it goes unanswered on a point-to-point veth.
    assert "tcp/7 n1-p1->n1-p2 (same node, no NAT)" in failed, failed
    assert "route n1-p1: n1-p2 via the node (ptp)" in failed, failed
    assert r.checks()["route n1-p1: n1-p2 via the node (ptp)"]["observed"].startswith("unicast direct")
    # Everything not from n1-p1 to its own node's subnet still passes.
    assert all(n.startswith(("tcp/7 n1-p1->n1-", "route n1-p1", "tcp/7 n1-p2->n1-p1")) for n in failed), failed


@pytest.mark.parametrize("cni,masq", LAYOUTS + [("vxlan", "auto"), ("calico", "auto")],
                         ids=["bridge", "bridge-masq-cni", "ptp", "vxlan", "calico"])
def test_without_the_masquerade_rule_outside_fails(nsbox, tmp_path, cni: str, masq: str) -> None:
    r = _mutant(nsbox, tmp_path, f"{cni}-{masq}-nomasq", cni, masq=masq, nomasq=True)
    assert r.returncode == 1, r.describe()
    failed = failed_checks(r)
    assert "http n1-p1->outside (masqueraded to node1)" in failed, failed
    # counted_by names what took the packet instead of the CNI's MASQUERADE
    observed = r.checks()["http n1-p1->outside (masqueraded to node1)"]["observed"]
    assert "not counted by it: counted by" in observed and "-d 192.168.70.200/32 -j RETURN" in observed, observed
    # pod-to-pod traffic is not masqueraded anyway (masq=cni: across nodes it is, so those fail too)
    assert all("outside" in n or (masq == "cni" and "n1-" in n and "across nodes" in n) for n in failed), failed


# ------------------------------------------------------------------ the pod recipe

POD_DUMP = ('echo "@@ ss"; ip netns exec $NSBOX_NETNS_WEB ss -Htln; '
            'echo "@@ links"; ip -n $NSBOX_NETNS_WEB -j link show; '
            'echo "@@ nat"; ip netns exec $NSBOX_NETNS_NODE1 iptables-save -t nat')


@pytest.mark.parametrize("cni", ["bridge", "ptp", "vxlan", "calico"])
def test_pod_containers_share_one_netns(nsbox, cni: str) -> None:
    r = nsbox.run("run", "pod", "--set", f"cni={cni}", "--format", "json", "--then", POD_DUMP, timeout=180)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert len(checks) == 7 and all(c["passed"] for c in checks.values()), r.describe()
    assert checks["http sidecar->127.0.0.1:80 (app)"]["answered_by"] == "app"
    assert checks["tcp app->127.0.0.1:9090 (sidecar)"]["answered_by"] == "sidecar"
    d = _sections(r.stderr)
    # Both containers' listeners are in the one pod netns (ss there), beside one eth0.
    ports = {ln.split()[3].rsplit(":", 1)[1] for ln in d["ss"].splitlines() if ln.strip()}
    assert {"80", "9090"} <= ports, d["ss"]
    assert sorted(i["ifname"] for i in json.loads(d["links"])) == ["eth0", "lo"]
    # portmap's chains on node1, the MASQ entry first in POSTROUTING.
    post = [ln for ln in d["nat"].splitlines() if ln.startswith("-A POSTROUTING")]
    assert "CNI-HOSTPORT-MASQ" in post[0], post
    assert any("-j DNAT --to-destination 10.244.1.2:80" in ln for ln in d["nat"].splitlines())


def test_pod_hostport_needs_portmaps_dnat(nsbox, tmp_path) -> None:
    r = run_mutant(nsbox, tmp_path, "pod-mut-nodnat", """
        @recipe("pod-mut-nodnat")
        def build(lab):
            '''pod without portmap's DNAT rule.'''
            _pod.build(lab, cni="ptp")
            for chain in lab.nodes["node1"].iptables("nat").chains.values():
                chain.rules[:] = [r for r in chain.rules if r.jumps_to != "DNAT"]
    """, base="pod.py", alias="_pod")
    assert r.returncode == 1, r.describe()
    assert failed_checks(r) == {"http outside->node1:8080 (hostPort -> app)"}


# ------------------------------------------------------------------ the hostport recipe

HOSTPORT_MUTANT = """
    @recipe("hostport-mut-{tag}")
    def build(lab):
        '''hostport with one piece of portmap taken away.'''
        _hp.build(lab, cni={cni!r})
        node1 = lab.nodes["node1"]
        if {nolocalnet}:
            for key in [k for k in node1.sysctls if k.endswith(".route_localnet")]:
                node1.sysctls[key] = "0"
        if {nohairpinmark}:
            for name, chain in node1.iptables("nat").chains.items():
                if name.startswith("CNI-DN-"):
                    chain.rules[:] = [r for r in chain.rules if not (r.jumps_to == "CNI-HOSTPORT-SETMARK"
                                                                     and "127.0.0.1" not in r.render())]
"""


@pytest.mark.parametrize("cni", ["bridge", "ptp", "vxlan", "calico"])
def test_hostport(nsbox, cni: str) -> None:
    r = nsbox.run("run", "hostport", "--set", f"cni={cni}", "--format", "json", timeout=180)
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert len(checks) == 5 and all(c["passed"] and c["answered_by"] == "web" for c in checks.values()), \
        r.describe()


@pytest.mark.parametrize("cni,tag,failing", [
    ("bridge", "nolocalnet", {"http node1->127.0.0.1:8080 (route_localnet, masqueraded)"}),
    ("ptp", "nolocalnet", {"http node1->127.0.0.1:8080 (route_localnet, masqueraded)"}),
    ("bridge", "nohairpinmark", {"http neighbour->node1:8080 (same subnet, masqueraded)",
                                 "http web->node1:8080 (hairpin, masqueraded)"}),
    ("ptp", "nohairpinmark", {"http neighbour->node1:8080 (same subnet, masqueraded)",
                              "http web->node1:8080 (hairpin, masqueraded)"}),
])
def test_hostport_mutants(nsbox, tmp_path, cni: str, tag: str, failing: set[str]) -> None:
    r = run_mutant(nsbox, tmp_path, f"hostport-mut-{cni}-{tag}", HOSTPORT_MUTANT.format(
        tag=f"{cni}-{tag}", cni=cni, nolocalnet=tag == "nolocalnet", nohairpinmark=tag == "nohairpinmark"),
        base="hostport.py", alias="_hp")
    assert r.returncode == 1, r.describe()
    assert failed_checks(r) == failing, r.describe()


# ------------------------------------------------------------------ cni=vxlan (flannel)

# tcpdump cannot drop privileges in --then's sandbox: node2's own raw-table counter for
# UDP 8472 from node1 is the observer of the encapsulated packets.
VXLAN_DUMP = ('ip netns exec $NSBOX_NETNS_NODE2 iptables -t raw -I PREROUTING -s 192.168.70.11 -p udp '
              '--dport 8472 -j ACCEPT; '
              'ip netns exec $NSBOX_NETNS_N1_P1 ping -c3 -W2 10.244.2.2 > /dev/null; echo $? > "$OUT/ping"; '
              'ip netns exec $NSBOX_NETNS_NODE2 iptables-save -c -t raw > "$OUT/udp8472"; '
              'ip netns exec $NSBOX_NETNS_N1_P1 ping -M do -c1 -W2 -s 1422 10.244.2.2 >/dev/null 2>&1; '
              'echo $? > "$OUT/df1450"; '
              'ip netns exec $NSBOX_NETNS_N1_P1 ping -M do -c1 -W2 -s 1423 10.244.2.2 >/dev/null 2>&1; '
              'echo $? > "$OUT/df1451"; '
              'ip -n $NSBOX_NETNS_NODE1 -j -d link show flannel.1 > "$OUT/link.json"; '
              'bridge -n $NSBOX_NETNS_NODE1 -j fdb show dev flannel.1 > "$OUT/fdb.json"; '
              'ip -n $NSBOX_NETNS_NODE1 -j neigh show dev flannel.1 > "$OUT/neigh.json"; '
              'ip -n $NSBOX_NETNS_NODE1 -j route show 10.244.2.0/24 > "$OUT/route.json"')


@pytest.mark.tools("ping")
def test_vxlan_layout_is_flannels(nsbox, tmp_path) -> None:
    r = nsbox.run("run", "pod-to-pod", "--set", "cni=vxlan", "--format", "json", "--then", VXLAN_DUMP,
                  env={"OUT": str(tmp_path)}, timeout=180)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.checks().values()), r.describe()
    out = lambda name: (tmp_path / name).read_text()  # noqa: E731
    # Pod traffic across nodes crosses the node network as VXLAN: UDP 8472 between the nodes.
    assert out("ping").strip() == "0"
    [counted] = [ln for ln in out("udp8472").splitlines() if "--dport 8472" in ln]
    packets, octets = map(int, re.match(r"\[(\d+):(\d+)\]", counted).groups())
    # three echo requests, each 84 bytes of IP wrapped in 50 bytes of VXLAN/UDP/IP/Ethernet
    assert (packets, octets) == (3, 3 * (84 + 50)), counted
    # MTU 1450: a 1450-byte don't-fragment packet passes, a 1451-byte one does not.
    assert (out("df1450").strip(), out("df1451").strip()) == ("0", "1")
    [link] = json.loads(out("link.json"))
    vx = link["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"], vx["learning"], link["mtu"]) == (1, 8472, False, 1450), link
    [fdb] = json.loads(out("fdb.json"))
    assert fdb["dst"] == "192.168.70.12" and "permanent" in fdb["state"] and "self" in fdb["flags"], fdb
    [neigh] = json.loads(out("neigh.json"))
    assert (neigh["dst"], neigh["lladdr"], neigh["state"]) == ("10.244.2.0", fdb["mac"], ["PERMANENT"]), neigh
    [route] = json.loads(out("route.json"))
    assert (route["gateway"], route["dev"], route["flags"]) == ("10.244.2.0", "flannel.1", ["onlink"]), route


def test_vxlan_without_the_fdb_entry_fails(nsbox, tmp_path) -> None:
    r = run_mutant(nsbox, tmp_path, "pod-to-pod-mut-nofdb", """
        @recipe("pod-to-pod-mut-nofdb")
        def build(lab):
            '''pod-to-pod cni=vxlan without node1's FDB entry for node2's VTEP.'''
            _p2p.build(lab, cni="vxlan")
            lab.nodes["node1"].fdbs.clear()
    """, base="pod_to_pod.py", alias="_p2p")
    assert r.returncode == 1, r.describe()
    failed = failed_checks(r)
    across = {n for n in r.checks() if "across nodes" in n}
    # Every pair across nodes fails (node1 cannot send into the overlay: replies die too),
    # and so does the 1450-byte echo to node2's pod; everything else passes.
    assert failed == across | {"icmp n1-p1->n2-p1 1450 bytes, don't fragment"} and len(across) == 8, failed


# ------------------------------------------------------------------ cni=calico

CALICO_DUMP = ('ip netns exec $NSBOX_NETNS_N1_P1 ping -c1 -W2 10.244.2.2 > /dev/null; '
               'ip -n $NSBOX_NETNS_N1_P1 -j neigh show 169.254.1.1 > "$OUT/neigh.json"; '
               'ip -n $NSBOX_NETNS_NODE1 -j -d link show > "$OUT/link.json"; '
               'ip -n $NSBOX_NETNS_NODE1 -j route show > "$OUT/route.json"; '
               'ip netns exec $NSBOX_NETNS_NODE1 sh -c "cat /proc/sys/net/ipv4/conf/cali*/proxy_arp" > "$OUT/proxy_arp"')


def test_calico_layout(nsbox, tmp_path) -> None:
    r = nsbox.run("run", "pod-to-pod", "--set", "cni=calico", "--format", "json", "--then", CALICO_DUMP,
                  env={"OUT": str(tmp_path)}, timeout=180)
    assert r.returncode == 0, r.describe()
    assert all(c["passed"] for c in r.checks().values()), r.describe()
    out = lambda name: (tmp_path / name).read_text()  # noqa: E731
    # 169.254.1.1 is nobody's address: the pod learnt the cali veth's MAC for it (proxy ARP).
    [neigh] = json.loads(out("neigh.json"))
    assert neigh["lladdr"] == "ee:ee:ee:ee:ee:ee", neigh
    cali = [x for x in json.loads(out("link.json")) if x["ifname"].startswith("cali")]
    assert len(cali) == 2 and all(x["address"] == "ee:ee:ee:ee:ee:ee" and len(x["ifname"]) == 15 for x in cali)
    assert out("proxy_arp").split() == ["1", "1"]
    routes = {(x.get("type", "unicast"), x["dst"], x.get("protocol")) for x in json.loads(out("route.json"))}
    assert {("blackhole", "10.244.1.0/24", "bird"), ("unicast", "10.244.2.0/24", "bird")} <= routes, routes


def test_calico_without_proxy_arp_fails(nsbox, tmp_path) -> None:
    r = run_mutant(nsbox, tmp_path, "pod-to-pod-mut-noproxyarp", """
        @recipe("pod-to-pod-mut-noproxyarp")
        def build(lab):
            '''pod-to-pod cni=calico with proxy ARP off on node1's cali veths.'''
            _p2p.build(lab, cni="calico")
            node1 = lab.nodes["node1"]
            for key in [k for k in node1.sysctls if k.endswith(".proxy_arp")]:
                node1.sysctls[key] = "0"
    """, base="pod_to_pod.py", alias="_p2p")
    assert r.returncode == 1, r.describe()
    failed = failed_checks(r)
    # Every probe from or to a pod of node1 needs 169.254.1.1 answered there; node2's own
    # same-node pair and the route checks (the kernel's lookup, not ARP) still pass.
    reach = {n for n in r.checks() if n.startswith(("tcp/", "http ", "conntrack "))}
    involving_n1 = {n for n in reach if "n1-" in n}
    # ... and the neighbour check: the pod has no entry for 169.254.1.1 (or a failed one).
    neigh = "neigh n1-p1: 169.254.1.1 answered by proxy ARP"
    assert failed == involving_n1 | {neigh} and "tcp/7 n2-p1->n2-p2 (same node, no NAT)" not in failed, failed
    assert r.checks()[neigh]["observed"] != r.checks()[neigh]["expected"]


@pytest.mark.tools("ping")
def test_vxlan_at_mtu_1400_fails_the_1450_byte_check(nsbox, tmp_path) -> None:
    """Mutant: flannel.1, cni0 and the pods' veths at 1400, not flannel's 1450 (1500 less 50 of
    VXLAN): the 1450-byte don't-fragment echo no longer leaves the pod, and `ping -M do -s
    1422` agrees. (The 1451-byte deny's mutant is test_vxlan_with_a_bigger_mtu_passes_the_1451_byte_probe:
    it needs a node network above 1500 too, or the kernel still drops the over-size VXLAN packet.)"""
    r = run_mutant(nsbox, tmp_path, "pod-to-pod-mut-mtu1400", """
        import dataclasses


        @recipe("pod-to-pod-mut-mtu1400")
        def build(lab):
            '''pod-to-pod on flannel vxlan with every MTU 1450 made 1400.'''
            _p2p.build(lab, cni="vxlan")
            for node in lab.nodes.values():
                for name, iface in list(node.interfaces.items()):
                    if iface.mtu == 1450:
                        node.interfaces[name] = dataclasses.replace(iface, mtu=1400)
    """, base="pod_to_pod.py", alias="_p2p",
        then='ip netns exec $NSBOX_NETNS_N1_P1 ping -M do -c1 -W2 -s 1422 10.244.2.2 >/dev/null 2>&1; '
             'echo $? > "$OUT/df1450"', env={"OUT": str(tmp_path)})
    assert r.returncode == 1, r.describe()
    big = "icmp n1-p1->n2-p1 1450 bytes, don't fragment"
    assert failed_checks(r) == {big}, r.describe()
    assert "message too long" in r.checks()[big]["detail"]
    assert (tmp_path / "df1450").read_text().strip() == "1"


@pytest.mark.tools("ping")
def test_vxlan_with_a_bigger_mtu_passes_the_1451_byte_probe(nsbox, tmp_path) -> None:
    """Mutant: flannel's MTU 1450 raised to 1500 (flannel.1, cni0, the pods' veths) on a node
    network of 1600 (the nodes' eth0, the switch's ports and br0): a 1451-byte
    don't-fragment echo now crosses, so exactly the check that says it cannot fails, and
    `ping -M do -s 1423` (1451 bytes) agrees. Proves the deny is the MTU's, not the probe's."""
    (tmp_path / "mutant.py").write_text(textwrap.dedent("""
        import dataclasses
        import importlib.util
        from nsbox.recipe import builtin_dirs, recipe

        _spec = importlib.util.spec_from_file_location("_pod_to_pod", builtin_dirs()[0] / "pod_to_pod.py")
        _p2p = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_p2p)

        @recipe("pod-to-pod-mut-mtu1500")
        def build(lab):
            '''pod-to-pod on flannel vxlan with MTU 1500 in the overlay, 1600 on the node network.'''
            _p2p.build(lab, cni="vxlan")
            lan = lab.nodes["k8s-lan"]
            for node in lab.nodes.values():
                for name, iface in list(node.interfaces.items()):
                    if iface.mtu == 1450:
                        mtu = 1500
                    elif node is lan or (name == "eth0" and node.name in ("node1", "node2", "outside")):
                        mtu = 1600  # the node network: br0 and its ports, the machines' eth0
                    else:
                        continue
                    node.interfaces[name] = dataclasses.replace(iface, mtu=mtu)
    """))
    r = nsbox.run("run", "pod-to-pod-mut-mtu1500", "--recipes", str(tmp_path), "--format", "json",
                  "--timeout", "0.5", "--settle", "0.5", "--then",
                  'ip netns exec $NSBOX_NETNS_N1_P1 ping -M do -c1 -W2 -s 1423 10.244.2.2 >/dev/null 2>&1; '
                  'echo $? > "$OUT/df1451"', env={"OUT": str(tmp_path)}, timeout=180)
    assert r.returncode == 1, r.describe()
    big = "icmp n1-p1->n2-p1 1451 bytes, don't fragment (over flannel's MTU 1450)"
    assert failed_checks(r) == {big}, r.describe()
    assert (tmp_path / "df1451").read_text().strip() == "0"
