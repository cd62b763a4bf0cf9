"""Kubernetes pod-to-pod networking: pods on several nodes, attached by a CNI layout, reach
each other without NAT, and reach the world outside the cluster masqueraded.

The cluster is a kind-like one: nodes are machines on a node network (192.168.70.0/24,
its gateway .1 as a kind cluster's Docker network has), each with a pod CIDR out of
10.244.0.0/16 and a route to every other node's pod CIDR via that node's address. Pods
are attached as the real CNI plugins attach them (nsbox/kits/k8s/cni.py, compared with
the real plugins 1.1.1 by tests/kernel/test_kernel_real_cni.py):

- `--set cni=bridge` (default): flannel's host-gw backend. The flannel CNI plugin hands
  each pod to the `bridge` plugin: cni0 with the pod CIDR's .1 (isGateway), one veth per
  pod with hairpin on, host-local addresses .2, .3, ..., pod routes to the cluster CIDR
  and default via .1. flanneld --ip-masq masquerades what leaves the cluster
  (FLANNEL-POSTRTG). `--set masq=cni`: the bridge plugin's own ipMasq instead (a
  CNI-<hash> chain per pod); it exempts only the pod's own subnet, so pods on other
  nodes see the node's address -- NAT between pods, which Kubernetes forbids: the
  recipe then expects exactly that, to show it.
- `--set cni=ptp`: kindnet, the CNI of every kind cluster. The `ptp` plugin: no bridge;
  each host veth holds the pod CIDR's .1 as a /32, the node routes each pod's /32 to its
  veth; in the pod the kernel's prefix route is deleted and replaced by `.1 dev eth0
  scope link` and `SUBNET via .1` (so pods on one node talk through the node, at L3).
  kindnetd's KIND-MASQ-AGENT masquerades everything not for the cluster.
- `--set cni=vxlan`: flannel's default backend. Pods as with bridge (MTU 1450); instead of
  routes via the nodes, flannel.1 (VXLAN VNI 1, UDP 8472, nolearning) on every node, with
  a permanent neighbour and FDB entry and an onlink route for every other node's lease.
  A 1450-byte don't-fragment echo crosses to node2's pod; a 1451-byte one does not.
- `--set cni=calico`: Calico's BGP layout. Pods have a /32 and route everything via
  169.254.1.1, an address nobody holds: the node's `cali...` veth (MAC ee:ee:ee:ee:ee:ee)
  answers for it by proxy ARP. The node routes each pod's /32 to its veth and blackholes
  the rest of its block; other nodes' blocks go via their addresses (proto bird, as BGP
  would have taught them). Felix's natOutgoing masquerades what leaves the pool.

Outside the cluster: "outside", a machine on the node network with no route to any pod
CIDR: a pod reaches it only masqueraded, seen from its node's address.
"""

from nsbox.errors import ValidationError
from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

MATRIX_MAX = 12  # pods in the all-pairs checks (each pair one tcp probe)


def pod_name(node: int, pod: int) -> str:
    return f"n{node}-p{pod}"


@recipe("pod-to-pod", params=[
    Param("cni", "bridge", "the CNI layout: bridge (flannel host-gw), vxlan (flannel), ptp (kindnet) or calico",
          choices=k8s.LAYOUTS),
    Param("nodes", 2, "nodes in the cluster", min=1, max=20),
    Param("pods", 2, "pods per node", min=1, max=50),
    Param("masq", "auto", "who masquerades: auto (flannel for bridge, kind for ptp) or cni (the bridge plugin's "
                          "ipMasq, cni=bridge only)", choices=("auto", "cni")),
])
def build(lab: Lab, cni: str = "bridge", nodes: int = 2, pods: int = 2, masq: str = "auto") -> None:
    """Pods on several nodes reach each other without NAT (cni=bridge|vxlan|ptp|calico); pod->outside is masqueraded."""
    if masq == "cni" and cni != "bridge":
        raise ValidationError(f"masq=cni is the bridge plugin's ipMasq: cni=bridge only, not cni={cni}")
    # auto: flanneld's masquerade for bridge and vxlan, kindnet's for ptp, Felix's for calico.
    k = k8s.Cluster(lab, cni=cni, masq="flannel" if masq == "auto" and cni == "bridge" else
                    (None if masq == "auto" else masq))
    outside = k.outside("outside")
    outside.serve("http", 80)

    # kubeadm/kind hand node i the pod CIDR 10.244.i.0/24; the kubelet runs the CNI ADD
    # for every pod scheduled there.
    for i in range(1, nodes + 1):
        kn = k.node(f"node{i}", f"10.244.{i}.0/24")
        for j in range(1, pods + 1):
            k.pod(kn, pod_name(i, j)).serve("tcp", 7).serve("http", 80)

    # The Kubernetes network model: every pod reaches every pod, on its node and across
    # nodes, and the server sees the client pod's own address (no NAT between pods).
    # masq=cni is the exception the bridge plugin makes: it exempts only its own subnet.
    everyone = [(i, j) for i in range(1, nodes + 1) for j in range(1, pods + 1)][:MATRIX_MAX]
    for a in everyone:
        for b in everyone:
            if a == b:
                continue
            src, dst = pod_name(*a), pod_name(*b)
            nat = masq == "cni" and a[0] != b[0]
            seen = k.nodes[f"node{a[0]}"].ip if nat else k.pod_ip(src)
            where = "same node" if a[0] == b[0] else "across nodes"
            label = "masqueraded by the bridge plugin's ipMasq" if nat else "no NAT"
            lab.expect(src, dst, "tcp", 7, seen_from=seen, name=f"tcp/7 {src}->{dst} ({where}, {label})")

    # Out of the cluster: masqueraded to the node's address by the layout's rules -- by the
    # very MASQUERADE rule the CNI wrote (its packet counter rises for this probe).
    first, node1 = pod_name(1, 1), k.nodes["node1"]
    egress = lab.expect(first, "outside", "http", 80, seen_from=node1.ip,
                        counted_by=masquerade_rule(k, "node1", k.pod_ip(first)),
                        name=f"http {first}->outside (masqueraded to node1)")
    lab.expect_conntrack("node1", egress, reply_dst=node1.ip)

    # Routing as the layout leaves it, judged by the kernel's own lookup (`ip route get`).
    gw = node1.gateway
    if pods > 1:
        peer = pod_name(1, 2)
        if cni == "ptp":
            # ptp: a neighbour pod is reached through the node (SUBNET via GW), not on-link.
            lab.expect_route(first, k.pod_ip(peer), via=gw, dev="eth0", src=k.pod_ip(first),
                             name=f"route {first}: {peer} via the node (ptp)")
        elif cni == "calico":
            # calico: everything via 169.254.1.1, which the node's veth answers by proxy ARP.
            lab.expect_route(first, k.pod_ip(peer), via="169.254.1.1", dev="eth0",
                             name=f"route {first}: {peer} via 169.254.1.1 (calico)")
        else:
            lab.expect_route(first, k.pod_ip(peer), direct=True, dev="eth0",
                             name=f"route {first}: {peer} on the bridge")
    if cni == "vxlan" and nodes > 1:
        # flannel's MTU 1450 (1500 less 50 bytes of VXLAN): a 1450-byte don't-fragment echo
        # crosses to node2's pod, a 1451-byte one cannot leave (ping -M do -s 1422 / 1423).
        far = pod_name(2, 1)
        lab.expect(first, far, "icmp", size=1450, df=True, name=f"icmp {first}->{far} 1450 bytes, don't fragment")
        lab.expect(first, far, "icmp", size=1451, df=True, allow=False,
                   name=f"icmp {first}->{far} 1451 bytes, don't fragment (over flannel's MTU 1450)")
        # Across nodes through flannel.1: the peer's lease via its VTEP address, onlink.
        lab.expect_route("node1", k.pod_ip(pod_name(2, 1)), via="10.244.2.0", dev="flannel.1",
                         name="route node1: node2's pods via flannel.1")
        lab.expect_neigh("node1", "10.244.2.0", lladdr=k.vtep_mac(k.nodes["node2"]), dev="flannel.1",
                         state="permanent", name="neigh node1: node2's VTEP (permanent)")
    if cni == "calico":
        # The node's own block: its pods' /32s win, the rest of it is a blackhole.
        lab.expect_route("node1", k.pod_ip(first), direct=True, dev=node1.attachments[first].host_veth,
                         name=f"route node1: {first} /32 to its cali veth")
        lab.expect_route("node1", "10.244.1.250", type="blackhole", name="route node1: rest of its block blackholed")
        # 169.254.1.1 is nobody's address: the pod learnt its node veth's MAC for it (proxy ARP).
        lab.expect_neigh(first, "169.254.1.1", lladdr="ee:ee:ee:ee:ee:ee", dev="eth0",
                         name=f"neigh {first}: 169.254.1.1 answered by proxy ARP")
    if cni == "ptp":
        lab.expect_route("node1", k.pod_ip(first), direct=True, dev=node1.attachments[first].host_veth,
                         name=f"route node1: {first} /32 to its veth")
    if nodes > 1 and cni != "vxlan":
        node2 = k.nodes["node2"]
        lab.expect_route("node1", str(node2.gateway), via=node2.ip, dev="eth0",
                         name="route node1: node2's pod CIDR via node2")


# The chain that holds the masquerade of each masq mode (nsbox/kits/k8s/cluster.py); "cni":
# the pod's own CNI-<hash> chain, which POSTROUTING enters by the pod's source address.
MASQ_CHAINS = {"flannel": "FLANNEL-POSTRTG", "kind": "KIND-MASQ-AGENT", "calico": "cali-nat-outgoing"}


def masquerade_rule(k: k8s.Cluster, node: str, pod_ip: str) -> tuple[str, str, str, str]:
    """The MASQUERADE rule that takes POD_IP's traffic out of the cluster on NODE, as a
    counted_by reference (node, "nat", chain, rule)."""
    nat = k.nodes[node].node.iptables("nat")
    chain = MASQ_CHAINS.get(k.masq)
    if k.masq == "cni":
        chain = next(r.jumps_to for r in nat.chains["POSTROUTING"].rules if f"-s {pod_ip}/32 " in r.render())
    rule = next(r for r in nat.chains[chain].rules if r.jumps_to == "MASQUERADE")
    return (node, "nat", chain, rule.render())
