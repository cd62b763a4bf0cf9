"""bridge-mode built on the docker kit, in the kernel.

- Its host's rules, read by the system's own iptables-save / ip6tables-save from
  inside the live lab, equal those of bridge-mode as it was before the kit (the model
  dumped to tests/data/kits/ then), table for table, in both families.
- bridge-nf-call-iptables/ip6tables read 0 in the lab's host netns (cat of /proc),
  while a fresh netns on this kernel reads 1: the explicit stock value is what makes
  the difference (negative control).
- `--set ipv6=true`: `ip -j addr` shows docker0's and the containers' IPv6 addresses,
  none tentative (nodad, as moby's IFA_F_NODAD); ip6tables-save shows the raw DROP per
  container address and NAT66's MASQUERADE; all 17 checks pass, NAT66 seen by the server
  and in conntrack -L -f ipv6, the v6 direct-routing deny counted on the ip6tables rule.
- `--set docker=20.10` equals the real dockerd 20.10's rules (tests/data/realdocker/),
  and its checks pass with the FORWARD policy, not a raw rule, dropping direct routing.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.dumps import dump_sections as _sections
from tests.support.golden import parse_save

from nsbox.kinds.firewalls.xtables import restore_text
from nsbox.model.serialize import lab_from_dict
from tests.support.paths import DATA

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save", "ip6tables-save")]

# From inside the live lab: the host's rules and br_netfilter keys, c1's and the
# host's addresses as ip -j sees them, each between markers.
DUMP = ('ns=$NSBOX_NETNS_HOST; echo "@@ rules4"; ip netns exec "$ns" iptables-save; '
        'echo "@@ rules6"; ip netns exec "$ns" ip6tables-save; '
        'echo "@@ brnf"; ip netns exec "$ns" cat /proc/sys/net/bridge/bridge-nf-call-iptables '
        '/proc/sys/net/bridge/bridge-nf-call-ip6tables; '
        'echo "@@ addr_host"; ip -n "$ns" -j addr show dev docker0; '
        'echo "@@ addr_c1"; ip -n "$NSBOX_NETNS_C1" -j addr show dev eth0; '
        'echo "@@ addr_c2"; ip -n "$NSBOX_NETNS_C2" -j addr show dev eth0; '
        'echo "@@ ct6"; ip netns exec "$ns" conntrack -L -f ipv6 -p tcp 2>/dev/null')


def _used(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """Tables with a rule, a user chain or a non-ACCEPT policy (an empty one may or may not exist)."""
    return {t: ls for t, ls in tables.items() if any(not ln.startswith(":") or not ln.endswith(" ACCEPT") for ln in ls)}


def _run(nsbox, *sets: str):
    args = [a for s in sets for a in ("--set", s)]
    return nsbox.run("run", "bridge-mode", *args, "--format", "json", "--then", DUMP, timeout=180)


def test_bridge_mode_on_the_kit_has_the_rules_it_had_before(nsbox) -> None:
    r = _run(nsbox)
    assert r.returncode == 0, r.describe()
    dump = _sections(r.stderr)
    before = lab_from_dict(json.loads((DATA / "kits" / "bridge-mode.c2.json").read_text()))
    fw = before.nodes["host"].firewall
    for family in (4, 6):
        kernel = _used(parse_save(dump[f"rules{family}"]))
        want = _used(parse_save(restore_text(fw, family)))
        assert kernel == want, f"IPv{family}: the kit's host rules differ from bridge-mode's before the kit"
    assert sum(len(v) for v in _used(parse_save(dump["rules4"])).values()) >= 25  # not two empty dumps
    # The report: same checks, same order, all passing.
    names = [c["name"] for c in r.result["checks"]]
    assert names == [c.name for c in before.checks] and all(c["passed"] for c in r.result["checks"])


def test_bridge_nf_call_iptables_is_a_stock_hosts_zero(nsbox) -> None:
    r = _run(nsbox)
    assert r.returncode == 0, r.describe()
    assert _sections(r.stderr)["brnf"].split() == ["0", "0"]
    # Negative control: on this kernel a fresh netns starts with both on, so without the
    # explicit sysctl the lab would differ from a stock host (where br_netfilter is unloaded).
    fresh = subprocess.run(["unshare", "--net", "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables",
                            "/proc/sys/net/bridge/bridge-nf-call-ip6tables"], capture_output=True, text=True)
    if fresh.returncode != 0:
        pytest.skip(f"no br_netfilter on this kernel: {fresh.stderr.strip()}")
    assert fresh.stdout.split() == ["1", "1"]


def _v6(addr_json: str) -> list[dict]:
    (link,) = json.loads(addr_json)
    return [a for a in link["addr_info"] if a["family"] == "inet6" and a.get("scope") == "global"]


def test_dual_stack_bridge_mode(nsbox) -> None:
    r = _run(nsbox, "ipv6=true")
    dump = _sections(r.stderr)
    # Addresses, non-tentative: usable at once (moby and the model: IFA_F_NODAD).
    for key, want in (("addr_host", "2001:db8:1::1"), ("addr_c1", "2001:db8:1::2"), ("addr_c2", "2001:db8:1::3")):
        addrs = _v6(dump[key])
        assert [a["local"] for a in addrs] == [want] and addrs[0]["prefixlen"] == 64, dump[key]
        assert not addrs[0].get("tentative") and not addrs[0].get("dadfailed"), addrs
    rules6 = parse_save(dump["rules6"])
    assert rules6["raw"][-2:] == ["-A PREROUTING -d 2001:db8:1::2/128 ! -i docker0 -j DROP",
                                  "-A PREROUTING -d 2001:db8:1::3/128 ! -i docker0 -j DROP"]
    assert "-A POSTROUTING -s 2001:db8:1::/64 ! -o docker0 -j MASQUERADE" in rules6["nat"]
    assert ":FORWARD DROP" in rules6["filter"]  # dockerd turned IPv6 forwarding on itself
    assert r.returncode == 0, r.describe()
    checks = r.checks()
    assert len(checks) == 17 and all(c["passed"] for c in checks.values()), r.describe()
    # NAT66: the server on internet saw the host's v6 uplink, and the host's conntrack
    # entry's reply tuple is addressed there (conntrack -L -f ipv6, below).
    assert checks["http6 c1->internet (NAT66)"]["seen"]["ip"] == "2001:db8:ff::2"
    assert re.search(r"src=2001:db8:1::2 dst=2001:db8:ff::1 .* src=2001:db8:ff::1 dst=2001:db8:ff::2 ", dump["ct6"]), \
        dump["ct6"]
    # The v6 deny is a drop (no answer, never refused by c2) and the ip6tables raw rule's doing.
    deny = checks["tcp6/80 internet->c2 (direct routing)"]
    assert deny["detail"].startswith("no answer") and "counted the packet" in deny["detail"], deny
    assert deny["observed"] == "deny, dropped by host raw -A PREROUTING -d 2001:db8:1::3/128 ! -i docker0 -j DROP"


def test_docker_2010_layout(nsbox) -> None:
    r = _run(nsbox, "docker=20.10")
    assert r.returncode == 0, r.describe()
    dump = _sections(r.stderr)
    want = parse_save((DATA / "realdocker" / "bridge-mode.host.rules").read_text())
    assert _used(parse_save(dump["rules4"])) == _used(want)
    assert _used(parse_save(dump["rules6"])) == {}
    checks = r.checks()
    # 20.10 has no raw table: the check passes only if FORWARD's policy counter rose (dropped_by).
    assert all(c["passed"] for c in checks.values()), r.describe()
    assert checks["tcp/80 internet->c2 (direct routing)"]["observed"] == "deny, dropped by host filter FORWARD policy"


# ------------------------------------------------------------------ the k8s kit

K8S_LAB = DATA / "kits" / "k8s_service.py"
K8S_DUMP = ('for n in NODE1 NODE2; do eval ns=\\$NSBOX_NETNS_$n; echo "@@ nat_$n"; '
            'ip netns exec "$ns" iptables-save -t nat; done; '
            'echo "@@ ct"; ip netns exec "$NSBOX_NETNS_NODE1" conntrack -L -p tcp -d 10.96.100.10 2>/dev/null')


def test_k8s_service_on_the_kit(nsbox) -> None:
    from nsbox.recipe import get_file

    r = nsbox.run("run", str(K8S_LAB), "--format", "json", "--then", K8S_DUMP, timeout=180)
    assert r.returncode == 0, r.describe()
    dump = _sections(r.stderr)
    [k8s_recipe] = get_file(str(K8S_LAB))
    lab = k8s_recipe.build()
    for node in ("NODE1", "NODE2"):
        kernel = parse_save(dump[f"nat_{node}"])["nat"]
        want = parse_save(restore_text(lab.nodes[node.lower()].firewall, 4))["nat"]
        # iptables-save quotes comments like the model; compare without quotes to stay
        # independent of the iptables version's quoting.
        assert [ln.replace('"', "") for ln in kernel] == [ln.replace('"', "") for ln in want], node
    # The kernel's own record of the DNAT: original destination the ClusterIP, reply
    # from a pod's address on port 8080 (conntrack -L, not nsbox's report).
    ct = [ln for ln in dump["ct"].splitlines() if "dst=10.96.100.10" in ln]
    assert ct, dump["ct"]
    assert all(re.search(r"src=10\.244\.[12]\.\d+ dst=\S+ sport=8080 ", ln) for ln in ct), ct


def test_k8s_service_answers_from_its_only_endpoint(nsbox) -> None:
    """Negative control of answered_by: with p3 as the only endpoint every ClusterIP
    probe is served by p3, also the ones from node1's pods (DNAT across nodes)."""
    r = nsbox.run("run", str(K8S_LAB), "--set", "endpoints=p3", "--format", "json", timeout=180)
    assert r.returncode == 0, r.describe()
    served = {n: c["answered_by"] for n, c in r.checks().items() if "ClusterIP" in n}
    assert served == {"http p1->web ClusterIP": "p3", "http p3->web ClusterIP": "p3",
                      "http node1->web ClusterIP": "p3"}, served


# ------------------------------------------------------------------ docker kit: -p 8080:80

PUBLISH_LAB = DATA / "kits" / "docker_publish.py"
PUBLISH_DUMP = ('ns=$NSBOX_NETNS_HOST; echo "@@ rules4"; ip netns exec "$ns" iptables-save; '
                'echo "@@ ss"; ip netns exec "$ns" ss -Htlnp "sport = :8080"; '
                'echo "@@ link"; ip -n "$ns" -j -d link show master docker0; '
                'echo "@@ sysctl"; ip netns exec "$ns" cat /proc/sys/net/ipv4/conf/docker0/route_localnet '
                '/proc/sys/net/bridge/bridge-nf-call-iptables; '
                'echo "@@ ct"; ip netns exec "$ns" conntrack -L -p tcp --orig-dst 203.0.113.2 2>/dev/null')


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy", "noproxy"])
def test_docker_kit_publish(nsbox, proxy: bool) -> None:
    from nsbox.recipe import get_file

    r = nsbox.run("run", str(PUBLISH_LAB), "--set", f"proxy={str(proxy).lower()}", "--format", "json",
                  "--then", PUBLISH_DUMP, timeout=180)
    assert r.returncode == 0, r.describe()
    dump = _sections(r.stderr)
    [publish_recipe] = get_file(str(PUBLISH_LAB))
    lab = publish_recipe.build({"proxy": str(proxy).lower()})
    assert _used(parse_save(dump["rules4"])) == _used(parse_save(restore_text(lab.host.firewall, 4)))
    ports = json.loads(dump["link"])
    hairpin = {p["ifname"]: p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports}
    assert len(hairpin) == 2 and set(hairpin.values()) == {not proxy}, hairpin
    assert dump["sysctl"].split() == (["0", "0"] if proxy else ["1", "1"])
    listeners = dump["ss"]
    assert ("docker-proxy" in listeners) == proxy, listeners  # ss -p names the process
    # The kernel's DNAT record of the outside client's connection: to the host's 8080,
    # answered by c1's 80.
    assert re.search(r"src=203\.0\.113\.1 dst=203\.0\.113\.2 sport=\d+ dport=8080 src=172\.17\.0\.2 "
                     r"dst=203\.0\.113\.1 sport=80 ", dump["ct"]), dump["ct"]


def test_docker_29_nftables_layout(nsbox) -> None:
    """docker=29-nftables: nft lists the kit's docker-bridges tables (counters aside), there
    is no iptables rule, and the direct-routing deny is the raw DROP's doing: its nft
    counter rose (read with nft list, as dropped_by cannot read nft counters). The host
    routes internet->lan: the nftables backend sets no FORWARD policy."""
    from nsbox.kits import docker as kit
    from nsbox.model import Lab

    dump_cmd = ('ns=$NSBOX_NETNS_HOST; echo "@@ rules4"; ip netns exec "$ns" iptables-save; '
                'echo "@@ rules6"; ip netns exec "$ns" ip6tables-save; '
                'for f in ip ip6; do echo "@@ nft_$f"; ip netns exec "$ns" nft list table $f docker-bridges; done')
    r = nsbox.run("run", "bridge-mode", "--set", "docker=29-nftables", "--format", "json", "--then", dump_cmd,
                  timeout=180)
    if r.returncode == 4:
        pytest.skip(r.result["skip_reason"])
    assert r.returncode == 0, r.describe()
    dump = _sections(r.stderr)
    assert _used(parse_save(dump["rules4"])) == {} and _used(parse_save(dump["rules6"])) == {}
    # What the kit renders for the same daemon, network and containers.
    lab = Lab("t")
    d = kit.Daemon(lab, lab.host, layout="29-nftables")
    net = d.default_bridge()
    d.run("c1", net)
    d.run("c2", net)
    zero = re.compile(r"counter packets \d+ bytes \d+")
    for fam, family in (("ip", 4), ("ip6", 6)):
        listed = zero.sub("counter packets 0 bytes 0", dump[f"nft_{fam}"])
        assert listed.replace("priority -100", "priority dstnat") == d.nft_text(family), fam
    drop = re.search(r'ip daddr 172\.17\.0\.3 iifname != "docker0" counter packets (\d+) bytes \d+ drop',
                     dump["nft_ip"])
    assert drop and int(drop.group(1)) > 0, dump["nft_ip"]
    # Negative control: c1's rule, which no probe aimed at, counted nothing.
    other = re.search(r'ip daddr 172\.17\.0\.2 iifname != "docker0" counter packets (\d+) ', dump["nft_ip"])
    assert other and int(other.group(1)) == 0, dump["nft_ip"]
    checks = r.checks()
    assert all(c["passed"] for c in checks.values()), r.describe()
    assert "http internet->lan (host routes: nftables sets no policy)" in checks
