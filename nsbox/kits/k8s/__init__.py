"""The Kubernetes kit: a cluster's nodes, pods attached by a CNI layout (cni.py) and
Services as kube-proxy writes them (services.py, rendered by nsbox.kits.kubeproxy)."""

from nsbox.kits.k8s.cluster import (CLUSTER_CIDR, LAN_SUBNET, LAYOUTS, MASQ, MASQ_MARK, PROXY_MODES, SERVICE_CIDR,
                                    Cluster, K8sNode, port_proto_hash, probability)
from nsbox.kits.k8s.dns import DNS_POD, ClusterDNS, dashed, reverse
from nsbox.kits.k8s.services import Port, ServiceHandle

Service = ServiceHandle

__all__ = ["CLUSTER_CIDR", "DNS_POD", "ClusterDNS", "dashed", "reverse", "LAN_SUBNET", "LAYOUTS", "MASQ", "MASQ_MARK", "PROXY_MODES", "SERVICE_CIDR", "Cluster",
           "K8sNode", "Port", "Service", "ServiceHandle", "port_proto_hash", "probability"]
