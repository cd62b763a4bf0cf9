"""NetworkPolicy semantics from the API (networking/v1 types.go), not from any agent's rules.

A connection from pod SRC to pod DST on PORT/PROTOCOL is allowed when SRC's egress allows
it and DST's ingress allows it. Per direction: a pod no policy selects for that direction
(podSelector matches it and policyTypes names the direction) is not isolated and allows
everything; an isolated pod allows what the union of the selecting policies' rules allows.
A rule matches when one of its peers matches (no peers = every peer) and one of its ports
matches (no ports = every port). Peers: podSelector alone = pods of the policy's namespace;
namespaceSelector alone = every pod of matching namespaces; both = pods matching both;
ipBlock = the peer's IP inside cidr and outside every except. A named port resolves on the
destination pod (its container port of that name and protocol); endPort makes a range.
"""

from __future__ import annotations

from nsbox.kits.netpol.model import Cluster, Peer, Pod, Policy, PolicyPort, Rule


def _peer_matches(peer: Peer, policy: Policy, other: Pod, cluster: Cluster) -> bool:
    if peer.ip_block is not None:
        return peer.ip_block.contains(other.ip)
    ns_labels = cluster.namespaces[other.namespace].labels
    if peer.namespace_selector is None:
        if other.namespace != policy.namespace:
            return False
    elif not peer.namespace_selector.matches(ns_labels):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(other.labels)


def _port_matches(pp: PolicyPort, dst: Pod, port: int, protocol: str) -> bool:
    if pp.protocol != protocol:
        return False
    if pp.port is None:
        return True
    if isinstance(pp.port, str):
        return dst.named_port(pp.port, protocol) == port
    if pp.end_port is not None:
        return pp.port <= port <= pp.end_port
    return pp.port == port


def _rule_matches(rule: Rule, policy: Policy, other: Pod, dst: Pod, port: int, protocol: str,
                  cluster: Cluster) -> bool:
    peer_ok = not rule.peers or any(_peer_matches(p, policy, other, cluster) for p in rule.peers)
    port_ok = not rule.ports or any(_port_matches(pp, dst, port, protocol) for pp in rule.ports)
    return peer_ok and port_ok


def _selecting(cluster: Cluster, pod: Pod, direction: str) -> list[Policy]:
    return [p for p in cluster.policies
            if p.namespace == pod.namespace and direction in p.policy_types and p.pod_selector.matches(pod.labels)]


def ingress_allows(cluster: Cluster, src: Pod, dst: Pod, port: int, protocol: str) -> bool:
    policies = _selecting(cluster, dst, "Ingress")
    return not policies or any(_rule_matches(r, p, src, dst, port, protocol, cluster)
                               for p in policies for r in p.ingress_rules)


def egress_allows(cluster: Cluster, src: Pod, dst: Pod, port: int, protocol: str) -> bool:
    policies = _selecting(cluster, src, "Egress")
    return not policies or any(_rule_matches(r, p, dst, dst, port, protocol, cluster)
                               for p in policies for r in p.egress_rules)


def allowed(cluster: Cluster, src: str, dst: str, port: int, protocol: str = "TCP") -> bool:
    """Whether pod SRC ("ns/name") may open a connection to pod DST on PORT/PROTOCOL."""
    s, d = cluster.pods[src], cluster.pods[dst]
    return egress_allows(cluster, s, d, port, protocol) and ingress_allows(cluster, s, d, port, protocol)


def truth_table(cluster: Cluster, pods: list[str], port: int, protocol: str) -> dict[tuple[str, str], bool]:
    """{(src, dst): allowed} for every ordered pair of PODS, the diagonal included."""
    return {(s, d): allowed(cluster, s, d, port, protocol) for s in pods for d in pods}
