"""Kubernetes NodePort Services, as kube-proxy writes them (`--set mode=iptables|nftables`),
reached from a machine outside the cluster on every node's address.

Two nodes (flannel host-gw layout), one endpoint: pod web-1 (app=web) on node1; "outside"
is a machine on the node network that is no node. Two Services select it, each with a
NodePort (30000, 30001 as the API server would allocate them):

- `web` (externalTrafficPolicy: Cluster): every node answers on its own address, from
  any endpoint in the cluster; the node masquerades the client (kube-proxy marks external
  traffic for Cluster policy), so web-1 sees a node-side source: node1's cni0 address
  when node1 took it, node2's address when node2 forwarded it to node1. conntrack on
  node2 shows both NATs (reply from web-1:8080 to node2).
- `web-local` (externalTrafficPolicy: Local): only nodes with a local endpoint answer,
  and without masquerade: web-1 sees the outside client's own address; node2, with no
  local endpoint, drops the connection (no answer, no REJECT).
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("service-nodeport", params=[
    Param("mode", "iptables", "kube-proxy's mode: iptables or nftables", choices=k8s.PROXY_MODES),
])
def build(lab: Lab, mode: str = "iptables") -> None:
    """NodePort Services by kube-proxy (mode=iptables|nftables) from outside: policy Cluster and Local."""
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode=mode)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    outside = k.outside("outside")
    k.pod(n1, "web-1", labels={"app": "web"}).serve("http", 8080)
    k.pod(n2, "other")  # node2 runs pods, just none of web's
    web1 = k.pod_ip("web-1")

    web = k.service("web", k8s.Port(80, 8080, name="http"), selector={"app": "web"}, type="NodePort")
    local = k.service("web-local", k8s.Port(80, 8080, name="http"), selector={"app": "web"}, type="NodePort",
                      external_traffic_policy="Local")
    np, np_local = web.node_port(80), local.node_port(80)

    # Cluster policy: both nodes answer, the client masqueraded to a node-side address.
    lab.expect(outside, n1.ip, "http", np, answered_by="web-1", seen_from=n1.gateway,
               name=f"http outside->node1:{np} (Cluster: masqueraded to node1's cni0)")
    via2 = lab.expect(outside, n2.ip, "http", np, answered_by="web-1", seen_from=n2.ip,
                      name=f"http outside->node2:{np} (Cluster: forwarded to node1, masqueraded to node2)")
    lab.expect_conntrack("node2", via2, reply_dst=n2.ip, reply_src=web1, reply_sport=8080,
                         name="conntrack node2: NodePort DNAT'ed to web-1 and masqueraded")

    # Local policy: the node with the endpoint keeps the client's address; the other drops.
    kept = lab.expect(outside, n1.ip, "http", np_local, answered_by="web-1", seen_from=k.outside_ip,
                      name=f"http outside->node1:{np_local} (Local: client address kept)")
    lab.expect_conntrack("node1", kept, reply_dst=k.outside_ip, reply_src=web1, reply_sport=8080,
                         name="conntrack node1: Local NodePort DNAT'ed, not masqueraded")
    # kube-proxy's iptables mode drops it in filter KUBE-EXTERNAL-SERVICES, so the deny ends
    # on that rule's counter; nftables mode drops it through a verdict map element, which has
    # no counter to read: there the deny waits out its timeout.
    no_local = None if mode != "iptables" else (
        "node2", "filter", "KUBE-EXTERNAL-SERVICES",
        f'-p tcp -m comment --comment "default/web-local:http has no local endpoints" '
        f'-m addrtype --dst-type LOCAL -m tcp --dport {np_local} -j DROP')
    lab.expect(outside, n2.ip, "tcp", np_local, allow=False, dropped_by=no_local,
               name=f"tcp outside->node2:{np_local} (Local: no endpoint on node2, dropped)")
    # Pods reach the NodePort too (node2's pod through node2: Cluster policy).
    lab.expect("other", n2.ip, "http", np, answered_by="web-1", name=f"http other->node2:{np} (pod to NodePort)")
