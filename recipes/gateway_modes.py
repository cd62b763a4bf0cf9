"""Gateway modes of a bridge network (`-o com.docker.network.bridge.gateway_mode_ipv4=MODE`),
Docker 28+: how the outside reaches the containers and how they go out.

- nat (default): MASQUERADE on the way out; from outside only published ports, through
  DNAT; direct routing to the containers is dropped (raw PREROUTING).
- nat-unprotected: MASQUERADE too, but direct routing reaches every port of the
  containers (no raw DROP, no unpublished-port DROP).
- routed: no NAT at all: the containers go out with their own addresses (the outside
  routes their subnet back via the host); direct routing reaches published ports and
  ICMP, other ports are dropped. The host port is ignored (moby's `routed` port mapper):
  no DNAT, no docker-proxy: the host's own server on 8080 answers there.
- isolated: no gateway address on the bridge and no default route in the containers:
  nothing in or out but the network itself.
c1 publishes 8080:80 and also serves an unpublished port, 81.
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import UPLINK, UPSTREAM, internet
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

MODES = ("nat", "nat-unprotected", "routed", "isolated")


@recipe("gateway-modes", params=[
    Param("mode", "nat", "gateway_mode_ipv4 of the network", choices=MODES),
    Param("docker", "29", "the dockerd (gateway modes are Docker 28+: not 20.10)",
          choices=tuple(layout for layout in kit.LAYOUTS if layout != "20.10")),
])
def build(lab: Lab, mode: str, docker: str) -> None:
    """Gateway modes nat, nat-unprotected, routed, isolated: NAT or not, direct routing or not."""
    lab.require("veth", "bridge", "nat", "conntrack")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker)
    d.default_bridge()
    net = d.network_create("gw", subnet="172.18.0.0/16", gateway_mode=mode)
    internet(lab, host, routes=(net.subnet,))
    c1 = d.run("c1", net, publish=["8080:80"])
    c2 = d.run("c2", net)
    c1.serve("http", 80).serve("tcp", 81)
    c2.serve("tcp", 7)
    d.machine()
    ip = c1.primary_ip
    iptables = docker == "29"

    lab.expect("c1", "c2", "tcp", 7, name="tcp/7 c1->c2 (the network itself)")
    if mode == "isolated":
        lab.expect("c1", UPSTREAM, "http", 80, allow=False, name="http c1->internet (isolated: no way out)")
        lab.expect("internet", ip, "http", 80, allow=False, name="http internet->c1:80 direct (isolated)")
        return
    # On the way out: MASQUERADE'd to the host's address, or (routed) the container's own.
    lab.expect("c1", UPSTREAM, "http", 80, seen_from=ip if mode == "routed" else UPLINK,
               name="http c1->internet (" + ("no NAT: its own address" if mode == "routed" else "MASQUERADE") + ")")
    # Published: through the host's address (DNAT), the client seen. Routed: Docker ignores
    # the host port (no DNAT, no docker-proxy): nothing answers at host:8080.
    if mode == "routed":
        # The host's 8080 stays free: a server of the host's own takes it and answers.
        host.serve("http", 8080)
        lab.expect("internet", UPLINK, "http", 8080, answered_by=host, seen_from=UPSTREAM,
                   name="http internet->host:8080 (routed: host port ignored, the host's own server)")
    else:
        lab.expect("internet", UPLINK, "http", 8080, answered_by=c1, seen_from=UPSTREAM,
                   name="http internet->host:8080")
    # Direct routing to the container itself.
    raw = (HOST, "raw", "PREROUTING", f"-d {ip}/32 ! -i {net.bridge} -j DROP") if iptables else None
    unpublished = (HOST, "filter", "DOCKER", f"! -i {net.bridge} -o {net.bridge} -j DROP") if iptables else None
    if mode == "nat":
        lab.expect("internet", ip, "http", 80, allow=False, dropped_by=raw, name="http internet->c1:80 direct (raw DROP)")
        lab.expect("internet", ip, "tcp", 81, allow=False, dropped_by=raw, name="tcp internet->c1:81 direct (raw DROP)")
        lab.expect("internet", ip, "icmp", allow=False, dropped_by=raw, name="icmp internet->c1 direct")
    elif mode == "nat-unprotected":
        lab.expect("internet", ip, "http", 80, name="http internet->c1:80 direct (unprotected)")
        lab.expect("internet", ip, "tcp", 81, name="tcp internet->c1:81 direct (unprotected: every port)")
    else:  # routed
        lab.expect("internet", ip, "http", 80, name="http internet->c1:80 direct (routed: published port)")
        lab.expect("internet", ip, "tcp", 81, allow=False, dropped_by=unpublished,
                   name="tcp internet->c1:81 direct (routed: unpublished port dropped)")
        lab.expect("internet", ip, "icmp", name="icmp internet->c1 direct (routed: ICMP accepted)")
