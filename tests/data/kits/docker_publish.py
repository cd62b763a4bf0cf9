"""`docker run -p 8080:80` on the docker kit, with the userland proxy on or off (test lab)."""

from nsbox.kits import docker
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

UPLINK, UPSTREAM = "203.0.113.2", "203.0.113.1"


@recipe("kits-docker-publish", params=[Param("proxy", True, "dockerd --userland-proxy")])
def build(lab: Lab, proxy: bool) -> None:
    """docker0, c1 publishing 8080:80, c2 beside it; an outside client (test lab)."""
    host = lab.host
    lab.require("veth", "bridge", "nat", "conntrack")
    internet = lab.node("internet")
    lab.veth(host, "eth0", internet, "eth0")
    host.address("eth0", f"{UPLINK}/24")
    internet.address("eth0", f"{UPSTREAM}/24")
    host.route("default", via=UPSTREAM)
    d = docker.Daemon(lab, host, userland_proxy=proxy)
    net = d.default_bridge()
    c1 = d.run("c1", net, publish=["8080:80"])
    c2 = d.run("c2", net)
    c1.serve("http", 80)
    c2.serve("http", 80)
    # From outside: DNAT in PREROUTING either way, and c1 sees the real client.
    lab.expect("internet", UPLINK, "http", 8080, answered_by="c1", seen_from=UPSTREAM,
               name="http internet->host:8080")
    # From the host itself: docker-proxy (proxy on) or OUTPUT DNAT + route_localnet (off).
    lab.expect("host", "127.0.0.1", "http", 8080, answered_by="c1", name="http host->127.0.0.1:8080")
    # c2 through the host's address: docker-proxy connects from the gateway (on); DNAT with
    # bridge-nf-call-iptables=1 keeps c2's address (off).
    lab.expect("c2", UPLINK, "http", 8080, answered_by="c1",
               seen_from="172.17.0.1" if proxy else "172.17.0.3", name="http c2->host:8080")
    # Direct routing to the container's published port is still dropped by the raw rule.
    internet.route(docker.DEFAULT_SUBNET, via=UPLINK)
    lab.expect("internet", "172.17.0.2", "tcp", 80, allow=False, name="tcp/80 internet->c1 (direct routing)",
               dropped_by=("host", "raw", "PREROUTING", "-d 172.17.0.2/32 ! -i docker0 -j DROP"))
