"""Recipes for tests/test_kernel_ipset.py: a server whose INPUT admits sources by an ipset,
as kube-router's KUBE-POD-FW chains admit peers by their KUBE-SRC-* sets."""

from nsbox.recipe import Param, recipe

ALLOW = "KUBE-SRC-ALLOWED"


@recipe("ipset-gate", params=[
    Param("members", "a", "which clients the hash:ip set holds: a, b, ab or none", choices=("a", "b", "ab", "none")),
])
def build(lab, members="a"):
    """srv admits tcp/80 from the sources in its hash:ip set KUBE-SRC-ALLOWED, drops the rest."""
    lab.require("ipset")
    lab.host.bridge("br0", "10.9.0.1/24")
    addrs = {"a": "10.9.0.2", "b": "10.9.0.3", "srv": "10.9.0.10"}
    for name, ip in addrs.items():
        n = lab.node(name)
        lab.veth(n, "eth0", lab.host, f"v-{name}", b_master="br0")
        n.address("eth0", f"{ip}/24")
    srv = lab.nodes["srv"]
    srv.serve("http", 80)
    entries = [addrs[m] for m in ("a", "b") if m in members]
    srv.ipset(ALLOW, "hash:ip", entries)
    srv.ipset("KUBE-DST-NETS", "hash:net", ["10.9.0.0/24", "10.9.0.8/29 nomatch"])
    f = srv.iptables("filter")
    f.append("INPUT", f"-p tcp -m tcp --dport 80 -m set --match-set {ALLOW} src -j ACCEPT")
    f.append("INPUT", "-p tcp -m tcp --dport 80 -j DROP")
    drop = ("srv", "filter", "INPUT", "-p tcp -m tcp --dport 80 -j DROP")
    for client in ("a", "b"):
        if client in members:
            lab.expect(client, "srv", "http", 80, name=f"http {client}->srv (in the set)")
        else:
            lab.expect(client, "srv", "http", 80, allow=False, dropped_by=drop,
                       name=f"http {client}->srv (not in the set)")


@recipe("ipset-unknown-set")
def unknown(lab):
    """A rule matching a set the node does not have: refused before anything is built."""
    lab.require("ipset")
    n = lab.node("srv")
    n.ipset("known", "hash:ip", ["10.9.0.2"])
    n.iptables("filter").append("INPUT", "-m set --match-set unknown src -j ACCEPT")
    lab.expect_interfaces(n, ["lo"])
