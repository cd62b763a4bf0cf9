"""`docker run --network host`: the container's processes live in the host's own netns.

No veth, no address of its own, no NAT, no rule: its server is the host's, reached from
outside at the host's address with the client's own source; what it sends leaves with
the host's address, untranslated. A second host-mode container that wants the same port
cannot have it: its listen fails with EADDRINUSE (a port conflict Docker does not catch).
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import UPLINK, UPSTREAM, internet
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe


@recipe("host-mode", params=[Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS)])
def build(lab: Lab, docker: str) -> None:
    """--network host: the container serves on the host's address; a second one on the same port conflicts."""
    lab.require("veth", "bridge", "nat", "conntrack")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker)
    net = d.default_bridge()
    internet(lab, host, routes=(net.subnet,))
    h1 = d.run("h1", "host").serve("http", 80)
    h2 = d.run("h2", "host")   # wants port 80 too
    d.machine()

    lab.expect_interfaces(h1, ["lo", "eth0", "docker0"], name="interfaces of h1 (the host's own)")
    lab.expect("internet", UPLINK, "http", 80, answered_by=h1, seen_from=UPSTREAM,
               name="http internet->host:80 (h1 answers, no NAT)")
    out = lab.expect("h1", UPSTREAM, "http", 80, seen_from=UPLINK, name="http h1->internet (the host's address)")
    lab.expect_conntrack(HOST, out, reply_dst=UPLINK, reply_src=UPSTREAM, reply_sport=80,
                         name="conntrack host: h1->internet, no NAT")
    lab.expect_port_conflict(h2, "tcp", 80, held_by=h1, name="tcp/80 h2 port conflict with h1")
