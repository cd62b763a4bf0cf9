"""Docker's default bridge network, as Docker 29 builds it with the iptables backend.

Mirrors `docker run` on a fresh dockerd: docker0 172.17.0.1/16, one veth pair
per container with eth0 inside, the DOCKER-* filter chains, MASQUERADE for
traffic leaving the bridge, and the Docker 28+ raw-table guard against direct
routing. Reference: shared/reference/dataplane.md, section 1a.

Around the Docker host: "internet", its upstream router, which also tries to
route straight to the containers (a LAN neighbour with a route to 172.17.0.0/16
via the host), and "lan", a second network on the host's eth1, so the host
would be a router between the two if Docker's FORWARD policy let it.
"""

from nsbox.model import HOST, Lab
from nsbox.recipe import Param, recipe

SUBNET = "172.17.0.0/16"
GATEWAY = "172.17.0.1"
UPLINK = "203.0.113.2"      # the Docker host's address on the outside network
UPSTREAM = "203.0.113.1"    # the node "internet": the host's upstream router
LAN_SUBNET = "198.51.100.0/24"  # a second network on the host's eth1
LAN_HOST = "198.51.100.1"   # the host's address there
LAN_PEER = "198.51.100.2"   # the node "lan"
DOCKER0_MAC = "b2:7c:4e:1a:9d:30"  # random in Docker (locally administered, unicast); fixed here


MATRIX_MAX = 16             # containers in the all-pairs matrix (see build)


def container_ip(i: int) -> str:
    """Docker hands out .2, .3, ... in order (i counts from 1)."""
    n = i + 1
    return f"172.17.{n // 256}.{n % 256}"


def veth_name(i: int) -> str:
    """Host ends are `veth` + 7 hex digits in Docker (random there, stable here)."""
    return f"veth{(0x5eed000 + i * 0x9e37) & 0xfffffff:07x}"


@recipe("bridge-mode", params=[Param("containers", 2, "number of containers on docker0", min=2, max=1000)])
def build(lab: Lab, containers: int) -> None:
    """Docker's default bridge (docker0): veth pairs, MASQUERADE, DOCKER-* chains (Docker 29, iptables)."""
    host = lab.host
    lab.require("veth", "bridge", "nat", "conntrack")

    # The host's uplink: eth0 on an outside network whose other end is "internet".
    internet = lab.node("internet")
    lab.veth(host, "eth0", internet, "eth0")
    host.address("eth0", f"{UPLINK}/24")
    internet.address("eth0", f"{UPSTREAM}/24")
    host.route("default", via=UPSTREAM)
    internet.serve("http", 80)
    # A LAN neighbour that tries direct routing to the containers through the
    # host: what Docker 28's raw-table DROP exists to stop.
    internet.route(SUBNET, via=UPLINK)

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

    # dockerd: bridge docker0 with the gateway address, forwarding on. dockerd gives
    # docker0 a random MAC when it creates it, so the gateway MAC containers have in
    # their ARP caches stays put as ports come and go (a bridge without one takes
    # the lowest port MAC). No router advertisements are accepted on it.
    host.bridge("docker0", f"{GATEWAY}/16", mac=DOCKER0_MAC)
    host.sysctl("net.ipv4.ip_forward", 1)
    host.sysctl("net.ipv6.conf.docker0.accept_ra", 0, optional=True)

    # docker run, once per container: veth pair, eth0 inside, default via docker0.
    for i in range(1, containers + 1):
        c = lab.node(f"c{i}")
        lab.veth(c, "eth0", host, veth_name(i), b_master="docker0")
        host.set_link(veth_name(i), txqueuelen=0)  # libnetwork creates the host end with TxQLen 0
        # Docker >= 26.0.2 turns IPv6 off on eth0 of a container on an IPv4-only network.
        c.sysctl("net.ipv6.conf.eth0.disable_ipv6", 1, optional=True)
        c.address("eth0", f"{container_ip(i)}/16")
        c.route("default", via=GATEWAY)
        c.serve("http", 80).serve("tcp", 7).serve("udp", 7)

    # raw: Docker 28+ drops packets for a container that did not come in on docker0.
    raw = host.iptables("raw")
    for i in range(1, containers + 1):
        raw.append("PREROUTING", f"-d {container_ip(i)}/32 ! -i docker0 -j DROP")

    # filter: dockerd enabled ip_forward itself, so it sets FORWARD's policy to DROP.
    flt = host.iptables("filter")
    flt.policy("FORWARD", "DROP")
    for chain in ("DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL", "DOCKER-USER"):
        flt.new_chain(chain)
    flt.append("FORWARD", "-j DOCKER-USER")
    flt.append("FORWARD", "-j DOCKER-FORWARD")
    flt.append("DOCKER", "! -i docker0 -o docker0 -j DROP")          # unpublished ports
    flt.append("DOCKER-BRIDGE", "-o docker0 -j DOCKER")
    flt.append("DOCKER-CT", "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.append("DOCKER-FORWARD", "-j DOCKER-CT")
    flt.append("DOCKER-FORWARD", "-j DOCKER-INTERNAL")
    flt.append("DOCKER-FORWARD", "-j DOCKER-BRIDGE")
    flt.append("DOCKER-FORWARD", "-i docker0 -j ACCEPT")              # icc=true, and egress

    # nat: port publishing hooks, and masquerade for traffic leaving docker0.
    nat = host.iptables("nat")
    nat.new_chain("DOCKER")
    nat.append("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    nat.append("OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER")
    nat.append("POSTROUTING", f"-s {SUBNET} ! -o docker0 -j MASQUERADE")

    # ip6tables (--ip6tables defaults to true): the same chain skeleton and jumps,
    # even though docker0 is IPv4-only; FORWARD stays ACCEPT (dockerd did not turn
    # IPv6 forwarding on) and nat OUTPUT excludes ::1 instead of 127.0.0.0/8.
    flt6 = host.ip6tables("filter")
    for chain in ("DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL", "DOCKER-USER"):
        flt6.new_chain(chain)
    flt6.append("FORWARD", "-j DOCKER-USER")
    flt6.append("FORWARD", "-j DOCKER-FORWARD")
    for chain in ("DOCKER-CT", "DOCKER-INTERNAL", "DOCKER-BRIDGE"):
        flt6.append("DOCKER-FORWARD", f"-j {chain}")
    nat6 = host.ip6tables("nat")
    nat6.new_chain("DOCKER")
    nat6.append("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER")
    nat6.append("OUTPUT", "! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER")

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
    # tests/test_kernel_mutations.py takes the layers away one after the other).
    lab.expect("internet", container_ip(2), "tcp", 80, allow=False, name="tcp/80 internet->c2 (direct routing)",
               dropped_by=(HOST, "raw", "PREROUTING", f"-d {container_ip(2)}/32 ! -i docker0 -j DROP"))
    # dockerd turned ip_forward on itself, so it set FORWARD's policy to DROP: the
    # host forwards Docker's traffic and nothing else -- it is no router between
    # internet and lan (Docker's docs: "Docker on a router").
    lab.expect("internet", "lan", "http", 80, allow=False, name="http internet->lan (host is no router)",
               dropped_by=(HOST, "filter", "FORWARD", "policy"))
