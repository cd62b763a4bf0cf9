"""A Kubernetes pod's hostPort, as the CNI `portmap` plugin (chained after bridge or ptp in
flannel's and kindnet's conflists) forwards it: `hostPort: 8080` on pod `web` (containerPort
80) on node1.

portmap's nat chains on node1 (nsbox/kits/k8s/cni.py, equal to the real plugin 1.1.1's):
CNI-HOSTPORT-DNAT for local destinations (PREROUTING and OUTPUT), the pod's CNI-DN-<hash>
with the DNAT and two marks -- from the pod's own subnet (hairpin) and from 127.0.0.1 --
which CNI-HOSTPORT-MASQ, first in POSTROUTING, masquerades; route_localnet=1 on the
interface towards the pod, so 127.0.0.1 may be routed there at all.

Who the pod sees: a client outside the node keeps its own address (DNAT only); the node
itself on 127.0.0.1, and pods of node1's subnet (web itself included: hairpin), are
masqueraded to node1's address towards the pod (10.244.1.1; with calico, whose veths have
no address, node1's 192.168.70.11); a pod on node2 arrives as
node2: node1's address is outside the cluster CIDR, so node2's masquerade (flanneld's or
kindnet's) rewrote it on the way out.
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

HOST_PORT = 8080


@recipe("hostport", params=[
    Param("cni", "bridge", "the CNI layout: bridge (flannel host-gw), vxlan (flannel), ptp (kindnet) or calico", choices=k8s.LAYOUTS),
])
def build(lab: Lab, cni: str = "bridge") -> None:
    """A pod's hostPort 8080 by portmap: from outside, the node's 127.0.0.1, pods, itself (cni=bridge|vxlan|ptp|calico)."""
    k = k8s.Cluster(lab, cni=cni, masq="flannel" if cni == "bridge" else None)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    outside = k.outside("outside")
    web = k.pod(n1, "web", host_ports=[(HOST_PORT, 80)])
    web.serve("http", 80)
    neighbour = k.pod(n1, "neighbour")
    remote = k.pod(n2, "remote")

    # The node's addresses answer on 8080 only through portmap's DNAT.
    lab.virtual(n1.ip, proto="tcp", port=HOST_PORT, name="web hostPort on node1")
    lab.virtual("127.0.0.1", proto="tcp", port=HOST_PORT, node="node1", name="web hostPort on node1's loopback")
    # node1's address towards its pods (cni0, or each ptp host veth); a calico veth has none,
    # so MASQUERADE takes node1's primary address.
    gw = n1.ip if cni == "calico" else n1.gateway

    lab.expect(outside, n1.ip, "http", HOST_PORT, answered_by={"web"}, seen_from=k.outside_ip,
               name="http outside->node1:8080 (client address kept)")
    lab.expect("node1", "127.0.0.1", "http", HOST_PORT, answered_by={"web"}, seen_from=gw,
               name="http node1->127.0.0.1:8080 (route_localnet, masqueraded)")
    # portmap marks for masquerade the pod's own network (its address with its prefix): a
    # calico pod's is a /32, so there only the pod itself is marked, and a neighbour,
    # routed through the node anyway, keeps its address.
    if cni == "calico":
        lab.expect(neighbour, n1.ip, "http", HOST_PORT, answered_by={"web"}, seen_from=k.pod_ip(neighbour),
                   name="http neighbour->node1:8080 (calico /32: not marked, address kept)")
    else:
        lab.expect(neighbour, n1.ip, "http", HOST_PORT, answered_by={"web"}, seen_from=gw,
                   name="http neighbour->node1:8080 (same subnet, masqueraded)")
    lab.expect(web, n1.ip, "http", HOST_PORT, answered_by={"web"}, seen_from=gw,
               name="http web->node1:8080 (hairpin, masqueraded)")
    lab.expect(remote, n1.ip, "http", HOST_PORT, answered_by={"web"}, seen_from=n2.ip,
               name="http remote->node1:8080 (other node's pod, masqueraded by node2)")
