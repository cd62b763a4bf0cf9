"""`docker run --network container:c1`: c2 joins c1's network namespace.

Same interfaces, same address, same loopback: c2 reaches c1's server on 127.0.0.1 and c1
reaches c2's; from anywhere else c2's server is at c1's address. dockerd adds nothing
for c2: no veth, no rule.
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import internet
from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("container-mode", params=[Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS)])
def build(lab: Lab, docker: str) -> None:
    """--network container:c1: c2 shares c1's interfaces, address and loopback."""
    lab.require("veth", "bridge", "nat")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker)
    net = d.default_bridge()
    internet(lab, host, routes=(net.subnet,))
    c1 = d.run("c1", net).serve("http", 80)
    c2 = d.run("c2", "container:c1").serve("tcp", 8080)
    c3 = d.run("c3", net)
    c3.serve("tcp", 7)
    d.machine()

    lab.expect_interfaces(c2, ["lo", "eth0"], name="interfaces of c2 (c1's)")
    lab.expect(c2, "127.0.0.1", "http", 80, answered_by=c1, name="http c2->127.0.0.1:80 (c1's server)")
    lab.expect(c1, "127.0.0.1", "tcp", 8080, answered_by=c2, name="tcp c1->127.0.0.1:8080 (c2's server)")
    lab.expect("host", c2, "tcp", 8080, answered_by=c2, name="tcp host->c2:8080 (at c1's address)")
    lab.expect(c3, c2, "tcp", 8080, answered_by=c2, name="tcp c3->c2:8080")
    lab.expect(c2, c3, "tcp", 7, name="tcp c2->c3:7 (through c1's eth0)")
