"""Docker's ipvlan network driver (`docker network create -d ipvlan -o parent=eth0
-o ipvlan_mode=l2|l3`), on the same LAN as macvlan-mode.

ipvlan children share the parent's MAC. In L2 mode they sit on the LAN like macvlan
children (LAN addresses, the LAN gateway). In L3 mode they have a subnet of their own
(192.168.214.0/24), a default route out of eth0 with no gateway, and the parent's
namespace routes for them: the LAN reaches them only through a route to that subnet
via the host, which the router is given here. In L2 mode the host itself cannot
reach its children (Documentation/networking/ipvlan.rst; Docker's ipvlan docs); in L3
mode it does, the long way: out to the router and back in through eth0.
Needs the kernel's ipvlan module: a kernel without it SKIPs with the reason.
"""

from nsbox.kits import docker as kit
from nsbox.kits.lan import GATEWAY, HOST_IP, Lan
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

L3_SUBNET = "192.168.214.0/24"


def container_ip(mode: str, i: int) -> str:
    return f"192.168.214.{9 + i}" if mode == "l3" else f"192.168.50.{9 + i}"


@recipe("ipvlan-mode", params=[
    Param("mode", "l2", "ipvlan mode", choices=("l2", "l3")),
    Param("vlan", 0, "802.1q: the parent is eth0.VLAN (0: eth0 itself)", min=0, max=4094),
    Param("docker", "29", "the dockerd whose rules are rebuilt (a macvlan/ipvlan network adds none)",
          choices=kit.LAYOUTS),
])
def build(lab: Lab, mode: str, vlan: int, docker: str) -> None:
    """Docker's ipvlan driver, L2 or L3: containers share the host's MAC; the host cannot reach them."""
    lab.require("ipvlan")
    host = lab.host
    lan = Lan.build(lab, host, vlan)
    # dockerd runs as always: docker0 and its rules; the macvlan/ipvlan network adds none.
    kit.Daemon(lab, host, layout=docker).default_bridge()
    for i in (1, 2):
        c = lab.node(f"c{i}")
        lab.ipvlan(c, "eth0", parent=(host, lan.parent), mode=mode)
        c.address("eth0", f"{container_ip(mode, i)}/24")
        if mode == "l2":
            c.route("default", via=GATEWAY)
        else:
            c.route("default", dev="eth0")  # L3: no gateway; the parent's namespace routes
        c.serve("tcp", 7)
    if mode == "l3":
        # The LAN learns the containers' subnet from its router (Docker's docs: "a route
        # to the L3 subnet via the host"); the router forwards.
        lan.router.sysctl("net.ipv4.ip_forward", 1)
        lan.router.route(L3_SUBNET, via=HOST_IP, dev=lan.parent)
        lan.lanhost.route(L3_SUBNET, via=GATEWAY)

    lab.expect("c1", "c2", "tcp", 7, name=f"tcp/7 c1->c2 ({mode})")
    lab.expect("c2", "c1", "icmp", name=f"icmp c2->c1 ({mode})")
    lab.expect("lanhost", "c1", "tcp", 7, name="tcp/7 lanhost->c1" + (" (via the router's route)" if mode == "l3" else ""))
    lab.expect("c1", "lanhost", "tcp", 7, name="tcp/7 c1->lanhost")
    if mode == "l2":
        lab.expect("host", "c1", "tcp", 7, allow=False, name="tcp/7 host->c1 (the kernel: parent never reaches a child)")
    else:
        # L3: the host's default route sends it to the router, whose route to the subnet sends it
        # back to the host's eth0, where ipvlan hands it to c1 by its address: reached, the long
        # way (seen on Debian's 6.1 with `nsbox run --kernel`; this host has no ipvlan).
        lab.expect("host", "c1", "tcp", 7, name="tcp/7 host->c1 (l3: out to the router and back in through eth0)")
