"""A Kubernetes pod with two containers: they share the pod's network namespace (the
sandbox's, which pause holds on a real node), so its eth0, its address and its loopback.

`app` serves http on 80, `sidecar` (a metrics exporter, say) tcp on 9090: each reaches the
other on 127.0.0.1; from another pod, on another node, both are at the pod's one address;
the pod's hostPort 8080 (portmap, chained after the CNI plugin) reaches `app` from the
node network. The cluster is pod-to-pod's (nsbox/kits/k8s), with the CNI layout of
`--set cni=bridge|ptp|vxlan|calico`.
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("pod", params=[
    Param("cni", "bridge", "the CNI layout: bridge (flannel host-gw), vxlan (flannel), ptp (kindnet) or calico", choices=k8s.LAYOUTS),
])
def build(lab: Lab, cni: str = "bridge") -> None:
    """Two containers in one pod: shared netns, 127.0.0.1 between them, one pod address (cni=bridge|vxlan|ptp|calico)."""
    k = k8s.Cluster(lab, cni=cni, masq="flannel" if cni == "bridge" else None)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    outside = k.outside("outside")

    # The pod "web": its sandbox (the netns, eth0 by the CNI plugin, hostPort 8080 -> 80
    # by portmap), then its two containers in it.
    web = k.pod(n1, "web", host_ports=[(8080, 80)])
    app = k.container(web, "app").serve("http", 80)
    sidecar = k.container(web, "sidecar").serve("tcp", 9090)
    client = k.pod(n2, "client")
    client.serve("tcp", 7)
    web_ip = k.pod_ip(web)

    lab.expect_interfaces(sidecar, ["lo", "eth0"], name="interfaces of sidecar (the pod's)")
    lab.expect(sidecar, "127.0.0.1", "http", 80, answered_by=app, name="http sidecar->127.0.0.1:80 (app)")
    lab.expect(app, "127.0.0.1", "tcp", 9090, answered_by=sidecar, name="tcp app->127.0.0.1:9090 (sidecar)")
    # From another node's pod both containers are at the pod's one address, seen without NAT.
    lab.expect("client", web_ip, "http", 80, answered_by=app, seen_from=k.pod_ip(client),
               name="http client->web:80 (app, across nodes)")
    lab.expect("client", web_ip, "tcp", 9090, answered_by=sidecar, name="tcp client->web:9090 (sidecar)")
    lab.expect(sidecar, "client", "tcp", 7, name="tcp sidecar->client:7 (through the pod's eth0)")
    # hostPort: the node network reaches app through node1's address.
    lab.virtual(n1.ip, proto="tcp", port=8080, name="web hostPort 8080")
    lab.expect(outside, n1.ip, "http", 8080, answered_by=app, name="http outside->node1:8080 (hostPort -> app)")
