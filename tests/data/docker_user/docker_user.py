"""An admin's DOCKER-USER rule between two containers on one bridge (docker0): it applies
only when bridged frames see iptables (br_netfilter loaded, bridge-nf-call-iptables=1).
dockerd 20.10 loads br_netfilter at start; Docker 28+ only for an icc=false or
--userland-proxy=false network, so on a stock host (module unloaded) the rule is never
reached. `br_netfilter` sets the host's value before dockerd (default: the layout's).
The check always claims the DROP: with br_netfilter off it fails (the mutation)."""

from nsbox.kits import docker as kit
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

RULE = "-s 172.17.0.2/32 -d 172.17.0.3/32 -p tcp -m tcp --dport 7 -j DROP"


@recipe("docker-user-bridged", params=[
    Param("docker", "20.10", "the dockerd", choices=("29", "20.10")),
    Param("br_netfilter", "default", "the host's bridge-nf-call-iptables before dockerd",
          choices=("default", "0", "1")),
])
def build(lab: Lab, docker: str, br_netfilter: str) -> None:
    """DOCKER-USER DROP c1->c2 tcp/7 on docker0."""
    lab.require("veth", "bridge", "nat", "conntrack")
    d = kit.Daemon(lab, lab.host, layout=docker,
                   br_netfilter=None if br_netfilter == "default" else br_netfilter == "1")
    net = d.default_bridge()
    c1, c2 = d.run("c1", net), d.run("c2", net)
    c2.serve("tcp", 7).serve("tcp", 8)
    d.docker_user(RULE)
    d.machine()
    lab.expect("c1", "c2", "tcp", 7, allow=False, dropped_by=(HOST, "filter", "DOCKER-USER", RULE),
               name="tcp/7 c1->c2 (DOCKER-USER DROP, bridged)")
    lab.expect("c1", "c2", "tcp", 8, name="tcp/8 c1->c2 (not in the rule)")
