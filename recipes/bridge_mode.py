"""Docker's default bridge network, as Docker 29 builds it with the iptables backend.

Mirrors `docker run` on a fresh dockerd: docker0 172.17.0.1/16, one veth pair
per container with eth0 inside, the DOCKER-* filter chains, MASQUERADE for
traffic leaving the bridge, and the Docker 28+ raw-table guard against direct
routing. Reference: shared/reference/dataplane.md, section 1a. Built on the
docker kit (nsbox/kits/docker/): the daemon, the network and `docker run` write
the links, addresses and rules, each rule in one place.

Around the Docker host: "internet", its upstream router, which also tries to
route straight to the containers (a LAN neighbour with a route to 172.17.0.0/16
via the host), and "lan", a second network on the host's eth1, so the host
would be a router between the two if Docker's FORWARD policy let it.

`--set ipv6=true` is `dockerd --ipv6 --fixed-cidr-v6 2001:db8:1::/64`: docker0 and
the containers get IPv6 addresses too, and the same promises are checked over
IPv6 (NAT66 by ip6tables MASQUERADE, the raw DROP per container address).
`--set docker=20.10` rebuilds the rules of the book's dockerd instead (DOCKER-ISOLATION
stages, no raw table: the FORWARD policy drops direct routing), `--set docker=29-nftables`
those of Docker 29's nftables backend (table docker-bridges; no FORWARD policy, so the
host routes internet->lan there, as a real one does).
"""

from nsbox.errors import ValidationError
from nsbox.kits import docker as kit
from nsbox.kits.docker import outside
from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

SUBNET = kit.DEFAULT_SUBNET
GATEWAY = "172.17.0.1"
UPLINK = outside.UPLINK      # the Docker host's address on the outside network
UPSTREAM = outside.UPSTREAM  # the node "internet": the host's upstream router
LAN_SUBNET = "198.51.100.0/24"  # a second network on the host's eth1
LAN_HOST = "198.51.100.1"   # the host's address there
LAN_PEER = "198.51.100.2"   # the node "lan"
# IPv6 (ipv6=true): docker0's --fixed-cidr-v6 and the outside network's prefix.
SUBNET6 = kit.DEFAULT_SUBNET6
GATEWAY6 = "2001:db8:1::1"
UPLINK6 = outside.UPLINK6
UPSTREAM6 = outside.UPSTREAM6

MATRIX_MAX = 16             # containers in the all-pairs matrix (see build)


def container_ip(i: int) -> str:
    """Docker hands out .2, .3, ... in order (i counts from 1)."""
    n = i + 1
    return f"172.17.{n // 256}.{n % 256}"


def container_ip6(i: int) -> str:
    return f"2001:db8:1::{i + 1:x}"


veth_name = kit.veth_name


@recipe("bridge-mode", params=[
    Param("containers", 2, "number of containers on docker0", min=2, max=1000),
    Param("ipv6", False, "dockerd --ipv6: docker0 and the containers dual-stack, checks over IPv6 too"),
    Param("docker", "29", "the dockerd whose rules are rebuilt", choices=kit.LAYOUTS),
])
def build(lab: Lab, containers: int, ipv6: bool = False, docker: str = "29") -> None:
    """Docker's default bridge (docker0): veth pairs, MASQUERADE, DOCKER-* chains (Docker 29, iptables)."""
    if ipv6 and docker == "20.10":
        # dockerd 20.10's --ip6tables is experimental and off: nothing would filter IPv6.
        raise ValidationError("ipv6=true needs docker=29 or 29-nftables (dockerd 20.10 writes no ip6tables rules)")
    host = lab.host
    lab.require("veth", "bridge", "nat", "conntrack")

    # The host's uplink: eth0 on an outside network whose other end is "internet", a
    # LAN neighbour that also tries direct routing to the containers through the
    # host: what Docker 28's raw-table DROP exists to stop.
    internet = outside.internet(lab, host, routes=(SUBNET,), routes6=(SUBNET6,), ipv6=ipv6)

    # A second network behind the host (eth1), which internet also routes via
    # the host: a host that forwards is a router between the two -- unless
    # Docker's FORWARD policy stops it.
    lan = lab.node("lan")
    lab.veth(host, "eth1", lan, "eth0")
    host.address("eth1", f"{LAN_HOST}/24")
    lan.address("eth0", f"{LAN_PEER}/24")
    lan.route("default", via=LAN_HOST)
    lan.serve("http", 80)
    internet.route(LAN_SUBNET, via=UPLINK)

    # dockerd starts: ip_forward on (so FORWARD's policy DROP), bridge-nf-call-iptables
    # as a stock host has it (off: bridged traffic skips iptables), the DOCKER-*
    # skeleton in iptables and ip6tables, then the default network docker0 (fixed
    # MAC, accept_ra=0, its gateway address and rules).
    d = kit.Daemon(lab, host, layout=docker, ipv6=ipv6)
    net = d.default_bridge()

    # docker run, once per container: veth pair, eth0 inside, default via docker0,
    # and the raw-table DROP for its address (Docker 28+).
    for i in range(1, containers + 1):
        c = d.run(f"c{i}", net)
        c.serve("http", 80).serve("tcp", 7).serve("udp", 7)

    # icc=true: every container reaches every other one (all ordered pairs). Capped
    # at MATRIX_MAX: the kernel's ARP table is shared by all namespaces (gc_thresh3 =
    # 1024 entries by default, settable only on the real host), and an all-pairs
    # matrix on one bridge needs N*(N-1) of them at once.
    members = [f"c{i}" for i in range(1, min(containers, MATRIX_MAX) + 1)]
    lab.expect_matrix(members, "tcp", 7, name="tcp/7 containers")

    # What Docker promises, proven with traffic.
    lab.expect("c1", "c2", "icmp")
    lab.expect("c1", "c2", "tcp", 7)
    lab.expect("c2", "c1", "udp", 7)
    lab.expect("c1", GATEWAY, "icmp", name="icmp c1->docker0 gateway")
    lab.expect("host", "c1", "tcp", 80)
    egress = lab.expect("c1", "internet", "http", 80, seen_from=UPLINK, name="http c1->internet (NAT)")
    lab.expect_conntrack("host", egress, reply_dst=UPLINK)
    # Direct routing from outside is dropped, and it is the raw rule's doing: its
    # packet counter rises. raw PREROUTING runs before filter FORWARD, and Docker
    # writes one such rule per container, so for a container's address the filter
    # DOCKER DROP and the FORWARD policy never see the packet (defence in depth;
    # tests/kernel/test_kernel_mutations.py takes the layers away one after the other).
    # dockerd 20.10 has no raw rule: there the FORWARD policy drops it.
    # With the nftables backend the drop is the docker-bridges table's raw-PREROUTING rule.
    direct = {"29": (HOST, "raw", "PREROUTING", f"-d {container_ip(2)}/32 ! -i docker0 -j DROP"),
              "20.10": (HOST, "filter", "FORWARD", "policy"),
              "29-nftables": (HOST, "nft", "ip docker-bridges raw-PREROUTING",
                              f'ip daddr {container_ip(2)} iifname != "docker0"')}[docker]
    lab.expect("internet", container_ip(2), "tcp", 80, allow=False, name="tcp/80 internet->c2 (direct routing)",
               dropped_by=direct)
    # dockerd turned ip_forward on itself, so it set FORWARD's policy to DROP: the
    # host forwards Docker's traffic and nothing else -- it is no router between
    # internet and lan (Docker's docs: "Docker on a router").
    if docker != "29-nftables":
        lab.expect("internet", "lan", "http", 80, allow=False, name="http internet->lan (host is no router)",
                   dropped_by=(HOST, "filter", "FORWARD", "policy"))
    else:
        # --firewall-backend=nftables sets no FORWARD policy (dockerd only refuses to run
        # on a host that does not forward already): the host routes between internet and
        # lan unless its admin firewalls it -- as on a real Docker 29 nftables host.
        lab.expect("internet", "lan", "http", 80, name="http internet->lan (host routes: nftables sets no policy)")

    if ipv6:
        # The same promises over IPv6, by address.
        c2_6 = container_ip6(2)
        lab.expect("c1", c2_6, "icmp", name="icmp6 c1->c2")
        lab.expect("c1", c2_6, "tcp", 7, name="tcp6/7 c1->c2")
        lab.expect("c1", GATEWAY6, "icmp", name="icmp6 c1->docker0 gateway")
        egress6 = lab.expect("c1", UPSTREAM6, "http", 80, seen_from=UPLINK6, name="http6 c1->internet (NAT66)")
        lab.expect_conntrack("host", egress6, reply_dst=UPLINK6)
        # Denied by ip6tables' raw rule (nft's under 29-nftables), whose counter rises.
        direct6 = (HOST, "raw", "PREROUTING", f"-d {c2_6}/128 ! -i docker0 -j DROP") if docker == "29" else \
            (HOST, "nft", "ip6 docker-bridges raw-PREROUTING", f'ip6 daddr {c2_6} iifname != "docker0"')
        lab.expect("internet", c2_6, "tcp", 80, allow=False, name="tcp6/80 internet->c2 (direct routing)",
                   dropped_by=direct6)
