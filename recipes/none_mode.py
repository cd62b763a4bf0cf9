"""`docker run --network none`: the container gets a network namespace with `lo` alone.

It reaches its own 127.0.0.1 and nothing else (no interface, no route); nothing reaches
it (it has no address). dockerd itself runs as always (docker0 and its rules, `--set
docker=` picks whose), and a container on docker0 stands beside it for contrast.
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import UPSTREAM, internet
from nsbox.model import Lab
from nsbox.recipe import Param, recipe


@recipe("none-mode", params=[Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS)])
def build(lab: Lab, docker: str) -> None:
    """--network none: a netns with lo alone; the container reaches its own 127.0.0.1 only."""
    lab.require("veth", "bridge", "nat")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker)
    net = d.default_bridge()
    internet(lab, host, routes=(net.subnet,))
    web = d.run("web", net)
    web.serve("http", 80)
    n1 = d.run("n1", "none")
    n1.serve("http", 80)
    d.machine()

    lab.expect_interfaces(n1, ["lo"], name="interfaces of n1 (lo alone)")
    lab.expect("n1", "127.0.0.1", "http", 80, answered_by="n1", name="http n1->127.0.0.1:80 (its own loopback)")
    lab.expect("n1", web.primary_ip, "http", 80, allow=False, name="http n1->web (no interface, no route)")
    lab.expect("n1", UPSTREAM, "http", 80, allow=False, name="http n1->internet (no way out)")
    lab.expect("web", UPSTREAM, "http", 80, name="http web->internet (docker0, for contrast)")
