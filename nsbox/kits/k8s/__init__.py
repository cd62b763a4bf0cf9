"""The Kubernetes kit: a cluster's nodes, pods attached by a CNI layout (cni.py) and
kube-proxy's ClusterIP Services (cluster.py)."""

from nsbox.kits.k8s.cluster import (CLUSTER_CIDR, LAN_SUBNET, LAYOUTS, MASQ, MASQ_MARK, SERVICE_CIDR, Cluster,
                                    K8sNode, Service, port_proto_hash, probability)

__all__ = ["CLUSTER_CIDR", "LAN_SUBNET", "LAYOUTS", "MASQ", "MASQ_MARK", "SERVICE_CIDR", "Cluster", "K8sNode",
           "Service", "port_proto_hash", "probability"]
