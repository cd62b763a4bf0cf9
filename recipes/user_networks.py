"""User-defined bridge networks (`docker network create`), as dockerd 29 (or 20.10) builds them.

Two networks, `front` (br-front, 172.18.0.0/16: a1, a2 with the alias `web`) and `back`
(br-back, 172.19.0.0/16: b1), and an `--internal` one, `vault` (br-vault, 172.20.0.0/16:
i1, i2), beside the default docker0. Containers on one network talk; across networks
they do not; the internal network has no way out and no way in. Every container on a
user network has dockerd's embedded DNS at 127.0.0.11 (reached through its own nat
chains DOCKER_OUTPUT/DOCKER_POSTROUTING), which knows the names and aliases of its own
network and forwards every other name to the host's upstream resolver (a DNS server in
`internet` here), over UDP and TCP. With `icc=false` (enable_icc on front), a1 and a2 no longer talk: a rule
of the bridge's own, which only sees bridged traffic with bridge-nf-call-iptables=1,
as dockerd sets it then.
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import UPLINK, UPSTREAM, internet
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

UPSTREAM_NAME = "www.example.test"  # a name only the upstream resolver (in internet) knows


@recipe("user-networks", params=[
    Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS),
    Param("icc", True, "enable_icc on the front network (false: its containers cannot talk)"),
    Param("docker0", False, "also run d1 on the default bridge docker0 (isolated from the user networks)"),
])
def build(lab: Lab, docker: str, icc: bool, docker0: bool = False) -> None:
    """docker network create: same network talks, across networks not, --internal has no way out; embedded DNS."""
    lab.require("veth", "bridge", "nat", "conntrack")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker)
    d.default_bridge()
    front = d.network_create("front", subnet="172.18.0.0/16", icc=icc)
    back = d.network_create("back", subnet="172.19.0.0/16")
    vault = d.network_create("vault", subnet="172.20.0.0/16", internal=True)
    inet = internet(lab, host, routes=(front.subnet, back.subnet, vault.subnet))
    # The host's upstream resolver (its resolv.conf's nameserver): a DNS server in internet.
    inet.serve_dns(53, {UPSTREAM_NAME: UPSTREAM})
    a1, a2 = d.run("a1", front), d.run("a2", front, aliases=("web",))
    b1 = d.run("b1", back)
    i1, i2 = d.run("i1", vault), d.run("i2", vault)
    d1 = d.run("d1", d.networks["bridge"]) if docker0 else None
    for c in (a1, a2, b1, i1, i2, *([d1] if d1 else [])):
        c.serve("tcp", 7).serve("http", 80)
    d.embedded_dns(upstream=UPSTREAM)
    d.machine()

    # One network: the containers talk (unless icc=false).
    icc_drop = None if icc else {"29": (HOST, "filter", "DOCKER-FORWARD", f"-i {front.bridge} -o {front.bridge} -j DROP"),
                                 "20.10": (HOST, "filter", "FORWARD", f"-i {front.bridge} -o {front.bridge} -j DROP")
                                 }.get(docker)
    lab.expect("a1", "a2", "tcp", 7, allow=icc, dropped_by=icc_drop,
               name="tcp/7 a1->a2 (same network" + ("" if icc else ", icc=false") + ")")
    lab.expect("i1", "i2", "tcp", 7, name="tcp/7 i1->i2 (same internal network)")
    # Across networks: never. Docker 29 drops it in raw PREROUTING (the packet did not
    # come in on the target's bridge); 20.10 in DOCKER-ISOLATION-STAGE-2.
    across = {"29": (HOST, "raw", "PREROUTING", f"-d {b1.primary_ip}/32 ! -i {back.bridge} -j DROP"),
              "20.10": (HOST, "filter", "DOCKER-ISOLATION-STAGE-2", f"-o {back.bridge} -j DROP")}.get(docker)
    lab.expect("a1", "b1", "tcp", 7, allow=False, dropped_by=across, name="tcp/7 a1->b1 (across networks)")
    # Into the internal network: Docker 29's DOCKER-INTERNAL drops what is not from it.
    internal = {"29": (HOST, "filter", "DOCKER-INTERNAL", f"! -s {vault.subnet} -o {vault.bridge} -j DROP")}.get(docker)
    lab.expect("b1", "i1", "tcp", 7, allow=False, dropped_by=internal, name="tcp/7 b1->i1 (into the internal network)")
    if d1 is not None:
        # docker0 is a network like the others: isolated from the user networks both ways.
        lab.expect("d1", "a1", "tcp", 7, allow=False, name="tcp/7 d1->a1 (docker0 to a user network)")
        lab.expect("b1", "d1", "tcp", 7, allow=False, name="tcp/7 b1->d1 (a user network to docker0)")
        lab.expect("d1", UPSTREAM, "http", 80, seen_from=UPLINK, name="http d1->internet (NAT)")
        lab.expect_dns("a1", "127.0.0.11", "d1", None, check_name="dns a1: d1 (docker0 has no names)")
    # The way out: NAT for a user network, none for the internal one.
    lab.expect("a1", UPSTREAM, "http", 80, seen_from=UPLINK, name="http a1->internet (NAT)")
    lab.expect("i1", UPSTREAM, "http", 80, allow=False, name="http i1->internet (internal: no way out)")
    lab.expect("internet", i1.primary_ip, "tcp", 7, allow=False, dropped_by=internal,
               name="tcp/7 internet->i1 (internal: no way in)")
    # The embedded DNS: its own network's names and aliases, nothing else.
    lab.expect_dns("a1", "127.0.0.11", "a2", a2.primary_ip, check_name="dns a1: a2")
    lab.expect_dns("a1", "127.0.0.11", "web", a2.primary_ip, check_name="dns a1: web (a2's alias)")
    lab.expect_dns("a1", "127.0.0.11", "b1", None, check_name="dns a1: b1 (another network)")
    # Names of no network of a1's: forwarded, from a1's netns, to the host's upstream.
    lab.expect_dns("a1", "127.0.0.11", UPSTREAM_NAME, UPSTREAM,
                   check_name=f"dns a1: {UPSTREAM_NAME} (forwarded to internet's resolver)")
    lab.expect_dns("i1", "127.0.0.11", "i2", i2.primary_ip, check_name="dns i1: i2 (internal too)")
