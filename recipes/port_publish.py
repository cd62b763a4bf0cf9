"""`docker run -p 8080:80`: a container's port published on the Docker host.

dockerd's rules (Docker 29 or 20.10, from nsbox.kits.dockerfw) DNAT the host's port to
the container: nat DOCKER from PREROUTING and OUTPUT, a filter DOCKER ACCEPT for the
container's port, and on Docker 29 the raw-table DROP of direct access. With the
userland proxy on, a docker-proxy process answers what DNAT does not see (the host's
own 127.0.0.1, a container reaching its own published port through the host); off,
dockerd uses route_localnet, hairpin mode and a MASQUERADE instead. The checks tell the
paths apart by the address the container's server sees.
"""

from nsbox.kits import docker as kit
from nsbox.kits.docker.outside import UPLINK, UPSTREAM, internet
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

HOST_PORT, CTR_PORT = 8080, 80
UNPUBLISHED = 82  # c1 serves it too; nobody published it


@recipe("port-publish", params=[
    Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS),
    Param("proxy", True, "dockerd --userland-proxy (docker-proxy processes)"),
    Param("bind", "any", "the host address the port is published on: any (0.0.0.0), "
                         "loopback (127.0.0.1) or uplink (203.0.113.2)", choices=("any", "loopback", "uplink")),
    Param("proto", "tcp", "the published protocol", choices=("tcp", "udp")),
    Param("range", False, "publish 8080-8081:80-81 instead of 8080:80"),
    Param("network", "default", "the container's network: default (docker0) or user (a user bridge)",
          choices=("default", "user")),
])
def build(lab: Lab, docker: str, proxy: bool, bind: str, proto: str, range: bool, network: str) -> None:
    """docker run -p 8080:80: DNAT from outside, docker-proxy or hairpin NAT from inside, the raw DROP."""
    lab.require("veth", "bridge", "nat", "conntrack")
    host = lab.host
    d = kit.Daemon(lab, host, layout=docker, userland_proxy=proxy)
    net = d.default_bridge()
    if network == "user":
        net = d.network_create("pubnet", subnet="172.18.0.0/16")
    internet(lab, host, routes=(net.subnet,))
    host_ip = {"any": "", "loopback": "127.0.0.1:", "uplink": f"{UPLINK}:"}[bind]
    ports = [(HOST_PORT, CTR_PORT)] + ([(HOST_PORT + 1, CTR_PORT + 1)] if range else [])
    spec = (f"{host_ip}{HOST_PORT}-{HOST_PORT + 1}:{CTR_PORT}-{CTR_PORT + 1}" if range
            else f"{host_ip}{HOST_PORT}:{CTR_PORT}") + f"/{proto}"
    c1 = d.run("c1", net, publish=[spec])
    c2 = d.run("c2", net)
    kind = "http" if proto == "tcp" else "udp"
    for _, ctr in ports:
        c1.serve(kind, ctr)
    c1.serve(kind, UNPUBLISHED)
    d.machine()

    gateway, c1_ip, c2_ip = net.gateway, c1.primary_ip, c2.primary_ip
    outside_ok = bind in ("any", "uplink")
    for hp, _ in ports:
        if outside_ok:
            # From outside: DNAT in PREROUTING, whatever the proxy; c1 sees the real client.
            out = lab.expect("internet", UPLINK, kind, hp, answered_by=c1, seen_from=UPSTREAM,
                             name=f"{kind} internet->host:{hp} (DNAT, client seen)")
            if hp == HOST_PORT:
                lab.expect_conntrack(HOST, out, reply_dst=UPSTREAM, reply_src=c1_ip, reply_sport=CTR_PORT,
                                     name=f"conntrack host: internet->host:{hp} DNAT'ed to c1:{CTR_PORT}")
    if bind in ("any", "loopback"):
        # The host's own loopback: docker-proxy (on), or OUTPUT DNAT with route_localnet and
        # a MASQUERADE to the gateway address (off). Either way c1 sees the gateway.
        lab.expect("host", "127.0.0.1", kind, HOST_PORT, answered_by=c1, seen_from=gateway,
                   name=f"{kind} host->127.0.0.1:{HOST_PORT}" + (" (docker-proxy)" if proxy else " (route_localnet)"))
    if outside_ok and proxy and proto == "udp" and docker == "20.10":
        # 20.10's docker-proxy answers UDP from the address the route to c2 picks (the
        # gateway's), not the uplink address c2 wrote to: c2's connected socket drops it.
        lab.expect("c2", UPLINK, kind, HOST_PORT, allow=False,
                   name=f"{kind} c2->host:{HOST_PORT} (hairpin, docker-proxy 20.10: reply from the gateway)")
    elif outside_ok:
        # c2 through the host's address: docker-proxy connects from the gateway (on); DNAT
        # keeps c2's own address (off, hairpin on the bridge port).
        lab.expect("c2", UPLINK, kind, HOST_PORT, answered_by=c1, seen_from=gateway if proxy else c2_ip,
                   name=f"{kind} c2->host:{HOST_PORT} (hairpin" + (", docker-proxy)" if proxy else ", NAT)"))
    # Direct routing to the container: Docker 28+ drops it in raw PREROUTING, published port
    # or not. Docker 20.10 has no raw rule: its published port gets in (the hole Docker 28
    # closed); any other port dies at FORWARD's DROP policy.
    raw = (HOST, "raw", "PREROUTING", f"-d {c1_ip}/32 ! -i {net.bridge} -j DROP")
    if docker != "20.10":
        # 29-nftables drops it in nft's raw-PREROUTING, whose counter dropped_by cannot read.
        by = raw if docker == "29" else None
        lab.expect("internet", c1_ip, kind, CTR_PORT, allow=False, dropped_by=by,
                   name=f"{kind} internet->c1:{CTR_PORT} direct (raw DROP)")
        lab.expect("internet", c1_ip, kind, UNPUBLISHED, allow=False, dropped_by=by,
                   name=f"{kind} internet->c1:{UNPUBLISHED} unpublished")
    else:
        lab.expect("internet", c1_ip, kind, CTR_PORT, name=f"{kind} internet->c1:{CTR_PORT} direct (20.10: allowed)")
        lab.expect("internet", c1_ip, kind, UNPUBLISHED, allow=False, dropped_by=(HOST, "filter", "FORWARD", "policy"),
                   name=f"{kind} internet->c1:{UNPUBLISHED} unpublished")
