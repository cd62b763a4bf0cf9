"""Docker's macvlan network driver (`docker network create -d macvlan -o parent=eth0`).

Each container's eth0 is a macvlan child of the host's eth0, with its own MAC, straight
on the LAN: a LAN address and the LAN's gateway, no bridge, no NAT, no iptables rule.
Around the host: "switch" (a bridge standing for the LAN switch), "router" (the LAN
gateway, 192.168.50.1) and "lanhost" (another machine on the LAN).

What the kernel does, proven here: children of one parent talk to each other in bridge
mode, never in private mode, and in vepa mode only through the switch, which must send
the frame back out of the port it came in on (hairpin); the parent's own namespace (the
host) cannot reach its children, because the macvlan driver hands a child's frames to
the other children and the wire, never up to the parent -- unless the host has a
macvlan of its own on the same parent (the "shim" of Docker's documentation), or in
vepa mode the switch reflects the host's own frames back. A passthru parent takes
no second macvlan (the kernel: EINVAL), so passthru has no shim.
The 802.1q variant (parent eth0.50) needs the kernel's 8021q module.
Reference: dataplane.md section 2; docs.docker.com/network/drivers/macvlan.
"""

from nsbox.kits import docker as kit
from nsbox.kits.lan import GATEWAY, Lan
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

SHIM_IP = "192.168.50.20"   # the host's own macvlan (shim=true)
MODES = ("bridge", "private", "vepa", "passthru")


def container_ip(i: int) -> str:
    return f"192.168.50.{9 + i}"   # --ip-range 192.168.50.8/29: .10, .11


@recipe("macvlan-mode", params=[
    Param("mode", "bridge", "macvlan mode", choices=MODES),
    Param("shim", False, "give the host a macvlan on eth0 with routes to the containers"),
    Param("hairpin", False, "the switch sends frames back out of the host's port (vepa needs it)"),
    Param("vlan", 0, "802.1q: the parent is eth0.VLAN (0: eth0 itself)", min=0, max=4094),
    Param("docker", "29", "the dockerd whose rules are rebuilt (a macvlan/ipvlan network adds none)",
          choices=kit.LAYOUTS),
])
def build(lab: Lab, mode: str, shim: bool, hairpin: bool, vlan: int, docker: str) -> None:
    """Docker's macvlan driver: containers on the LAN with their own MACs; the host cannot reach them."""
    lab.require("macvlan")
    host = lab.host
    lan = Lan.build(lab, host, vlan)
    # dockerd runs as always: docker0 and its rules; the macvlan/ipvlan network adds none.
    kit.Daemon(lab, host, layout=docker).default_bridge()
    lan_if = lan.parent
    if hairpin:  # the switch reflects frames to the port they came in on (802.1Qbg "reflective relay")
        lan.switch.set_link("p-host", hairpin=True)

    # docker run --network macnet: a macvlan child of the parent, moved into the container.
    count = 1 if mode == "passthru" else 2  # passthru: one child takes the parent over
    for i in range(1, count + 1):
        c = lab.node(f"c{i}")
        lab.macvlan(c, "eth0", parent=(host, lan_if), mode=mode)
        c.address("eth0", f"{container_ip(i)}/24")
        c.route("default", via=GATEWAY)
        c.serve("tcp", 7)

    if shim:
        # Docker's documented workaround: the host gets a macvlan of its own on the parent
        # (same mode) and reaches the containers through it.
        lab.macvlan(host, "shim", parent=(host, lan_if), mode=mode)
        host.address("shim", f"{SHIM_IP}/32")
        for i in range(1, count + 1):
            host.route(f"{container_ip(i)}/32", dev="shim")

    # On the LAN: the LAN machine and the gateway reach the containers, and back.
    lab.expect("lanhost", "c1", "tcp", 7, name="tcp/7 lanhost->c1")
    lab.expect("c1", "lanhost", "tcp", 7, name="tcp/7 c1->lanhost")
    lab.expect("c1", GATEWAY, "icmp", name="icmp c1->LAN gateway")
    if count == 2:
        c2c = {"bridge": True, "private": False, "vepa": hairpin}[mode]
        why = {"bridge": "", "private": " (private mode)",
               "vepa": " (vepa, via the switch's hairpin)" if hairpin else " (vepa, switch without hairpin)"}[mode]
        if not c2c:  # their ARP goes out to the switch and no one answers: as for host->c1 below
            for c in ("c1", "c2"):
                lab.nodes[c].sysctl("net.ipv4.neigh.eth0.retrans_time_ms", 50)
        deny = None if c2c else "unreachable"
        lab.expect("c1", "c2", "tcp", 7, allow=c2c, deny=deny, name=f"tcp/7 c1->c2{why}")
        lab.expect("c2", "c1", "icmp", allow=c2c, deny=deny, name=f"icmp c2->c1{why}")
    # The parent's namespace and its children: never directly, except in vepa mode when the
    # switch reflects the host's own frames back (hairpin); through a shim as its mode allows.
    if mode == "vepa":
        host_c1, why = hairpin, " (vepa: the switch reflects the host's frames)" if hairpin else \
            " (vepa, switch without hairpin)"
    elif shim:
        host_c1, why = mode == "bridge", f" (through the shim, {mode} mode)"
    elif hairpin and mode != "passthru":
        # The reflected frame comes back in through the parent with the parent's own
        # source MAC, which is no macvlan's, so the driver treats it as the wire's and hands
        # it to c1 -- in bridge and private mode alike (seen on 6.18; passthru: still none).
        host_c1, why = True, " (the switch reflects the host's frames back to c1)"
    else:
        host_c1, why = False, " (the kernel: a parent never reaches its children)"
    deny = None
    if not host_c1 and "." not in lan_if:
        # The host's ARP request for c1 leaves through the parent and never comes up into
        # the child, so it goes unanswered. With the neighbour retransmit at 50 ms (the
        # default is 1 s, 3 tries) the kernel gives up within ~0.15 s and the connect ends
        # in "host unreachable": the deny is proven by the kernel's own verdict instead of
        # a silent timeout.
        host.sysctl(f"net.ipv4.neigh.{'shim' if shim else lan_if}.retrans_time_ms", 50)  # where the ARP leaves
        deny = "unreachable"
    lab.expect("host", "c1", "tcp", 7, allow=host_c1, deny=deny, name=f"tcp/7 host->c1{why}")
