"""NetworkPolicy: a simulator written from the API semantics, and a renderer that writes
what kube-router's iptables network-policy controller writes (KUBE-ROUTER-FORWARD,
KUBE-POD-FW-*, KUBE-NWPLCY-* chains matching ipsets), so the two can be compared
against the Kubernetes e2e truth tables and against each other on a real kernel.

    cluster = netpol.model_cluster([80], ["TCP"])         # x/y/z x a/b/c, as the e2e builds it
    cluster.apply(netpol.parse_policy(obj, "x"))
    netpol.allowed(cluster, "y/a", "x/b", 80, "TCP")       # the simulator
    rules = netpol.render(cluster, version="1")            # kube-router's ipset + iptables-restore input
"""

from nsbox.kits.netpol.cases import PODS, Scenario, load_cases, model_cluster, render_tables, tables
from nsbox.kits.netpol.model import Cluster, ContainerPort, Namespace, Pod, Policy, parse_policy
from nsbox.kits.netpol.simulator import allowed, truth_table

__all__ = ["PODS", "Cluster", "ContainerPort", "Namespace", "Pod", "Policy", "Scenario", "allowed",
           "load_cases", "model_cluster", "parse_policy", "render_tables", "tables", "truth_table"]
