"""A two-node cluster on the k8s kit: three pods, one ClusterIP Service over them (test lab)."""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

CLUSTER_IP = "10.96.100.10"
PODS = {"p1", "p2", "p3"}


@recipe("kits-k8s-service", params=[Param("endpoints", "p1,p2,p3", "the Service's endpoint pods")])
def build(lab: Lab, endpoints: str) -> None:
    """Two nodes (cni0, hairpin ports), three pods, Service default/web 80 -> 8080 (kube-proxy iptables)."""
    k = k8s.Cluster(lab)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    pods = [k.pod(n1, "p1"), k.pod(n1, "p2"), k.pod(n2, "p3")]
    for p in pods:
        p.serve("http", 8080)
    k.service("web", k8s.Port(80, 8080, name="http"), pods=endpoints.split(","), cluster_ip=CLUSTER_IP)
    lab.expect("p1", "p3", "http", 8080, name="http p1->p3 (across nodes)")
    lab.expect("p1", CLUSTER_IP, "http", 80, answered_by=PODS, name="http p1->web ClusterIP")
    lab.expect("p3", CLUSTER_IP, "http", 80, answered_by=PODS, name="http p3->web ClusterIP")
    lab.expect("node1", CLUSTER_IP, "http", 80, answered_by=PODS, name="http node1->web ClusterIP")
