"""The Docker host's outside world: its uplink eth0 to a node "internet" (the upstream
router), which also routes the containers' subnet via the host -- the direct routing
Docker 28's raw-table DROP exists to stop."""

from __future__ import annotations

from nsbox.model import Lab, Node

UPLINK = "203.0.113.2"      # the Docker host's address on the outside network
UPSTREAM = "203.0.113.1"    # the node "internet": the host's upstream router
UPLINK6 = "2001:db8:ff::2"
UPSTREAM6 = "2001:db8:ff::1"


def internet(lab: Lab, host: Node, *, routes: tuple[str, ...] = (), routes6: tuple[str, ...] = (),
             ipv6: bool = False) -> Node:
    """`internet` on the host's eth0, serving http/80; the host's default route goes there;
    ROUTES (the containers' subnets) are routed back via the host."""
    net = lab.node("internet")
    lab.veth(host, "eth0", net, "eth0")
    host.address("eth0", f"{UPLINK}/24")
    net.address("eth0", f"{UPSTREAM}/24")
    host.route("default", via=UPSTREAM)
    net.serve("http", 80)
    for r in routes:
        net.route(r, via=UPLINK)
    if ipv6:
        # The same outside network in IPv6 (addresses go in with nodad: usable at once).
        host.address("eth0", f"{UPLINK6}/64")
        net.address("eth0", f"{UPSTREAM6}/64")
        host.route("::/0", via=UPSTREAM6)
        for r in routes6:
            net.route(r, via=UPLINK6)
    return net
