"""A Kubernetes hostNetwork pod (`spec.hostNetwork: true`, as kube-proxy, CNI agents and
node-exporter run): the kubelet runs no CNI ADD for it; its sandbox and its container live
in the node's own network namespace.

`agent` (node-exporter, say: http on 9100) runs with hostNetwork on node1. It has the
node's interfaces (eth0, the CNI's cni0 / veths / flannel.1), so it answers on node1's
address: from outside the cluster (client address kept, no DNAT anywhere), from a pod on
node1 (delivered locally: the pod's own address), from a pod on node2 (masqueraded to
node2's address by node2's CNI rules, since node1's address is outside the cluster CIDR).
Pod-to-pod is untouched, and the agent reaches pods like the node does, from the address
the node's route picks: cni0's .1 (bridge, vxlan) or the ptp veth's .1 for its own pods,
eth0's address for pods behind another node (flannel.1's lease address .0 with vxlan;
calico's cali veths have no address, so eth0's address for every pod).

Seen from outside nsbox while the lab runs (tests/test_kernel_host_network.py): `ip netns
identify PID` of agent's process names node1's netns, `ss -ltnp` in node1 shows agent's
process on :9100, and `ip netns pids node1` holds agent and its pause.
"""

import ipaddress

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

AGENT_PORT = 9100


@recipe("host-network", params=[
    Param("cni", "bridge", "the CNI layout: bridge (flannel host-gw), vxlan (flannel), ptp (kindnet) or calico",
          choices=k8s.LAYOUTS),
])
def build(lab: Lab, cni: str = "bridge") -> None:
    """A hostNetwork pod: the node's netns, answering on the node's address; pod-to-pod unchanged (cni=bridge|vxlan|ptp|calico)."""
    k = k8s.Cluster(lab, cni=cni, masq="flannel" if cni == "bridge" else None)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    outside = k.outside("outside")
    outside.serve("http", 80)
    local = k.pod(n1, "local").serve("tcp", 7)
    remote = k.pod(n2, "remote").serve("tcp", 7)
    agent = k.host_network_pod(n1, "agent").serve("http", AGENT_PORT)

    # The node's namespace: exactly node1's interfaces (no eth0 of its own from a CNI ADD).
    lab.expect_interfaces(agent, list(n1.node.interfaces), name="interfaces of agent (node1's)")
    # Its server is on node1's address, reached without NAT from outside the cluster...
    lab.expect(outside, n1.ip, "http", AGENT_PORT, answered_by=agent, seen_from=k.outside_ip,
               name=f"http outside->node1:{AGENT_PORT} (agent, hostNetwork)")
    # ... from a pod of node1 (local delivery: no POSTROUTING, the pod's own address) ...
    lab.expect(local, n1.ip, "http", AGENT_PORT, answered_by=agent, seen_from=k.pod_ip(local),
               name=f"http local->node1:{AGENT_PORT} (same node, address kept)")
    # ... and from node2's pod, masqueraded by node2 (node1's address is outside the cluster CIDR).
    lab.expect(remote, n1.ip, "http", AGENT_PORT, answered_by=agent, seen_from=n2.ip,
               name=f"http remote->node1:{AGENT_PORT} (masqueraded by node2)")

    # Pod-to-pod still works, and the agent reaches pods as node1 does.
    lab.expect(local, remote, "tcp", 7, seen_from=k.pod_ip(local), name="tcp local->remote:7 (no NAT)")
    lab.expect(remote, local, "tcp", 7, seen_from=k.pod_ip(remote), name="tcp remote->local:7 (no NAT)")
    own_src = n1.ip if cni == "calico" else n1.gateway
    far_src = str(ipaddress.ip_network(n1.pod_cidr).network_address) if cni == "vxlan" else n1.ip
    lab.expect(agent, local, "tcp", 7, seen_from=own_src, name=f"tcp agent->local:7 (from {own_src})")
    lab.expect(agent, remote, "tcp", 7, seen_from=far_src, name=f"tcp agent->remote:7 (from {far_src})")
