"""A LAN around a machine: a switch (a bridge node), the LAN's router and another LAN
machine, each on a switch port -- what Docker's macvlan and ipvlan networks plug into.

    lan = Lan.build(lab, lab.host, vlan=0)
    lab.macvlan(c, "eth0", parent=(lab.host, lan.parent), mode="bridge")
"""

from __future__ import annotations

from dataclasses import dataclass

from nsbox.model import Lab, Node

SUBNET = "192.168.50.0/24"
GATEWAY = "192.168.50.1"    # the LAN router
HOST_IP = "192.168.50.2"    # the machine's own LAN address
LANHOST = "192.168.50.3"    # another machine on the LAN


@dataclass
class Lan:
    switch: Node
    router: Node
    lanhost: Node
    parent: str  # the machine's interface on the LAN: eth0, or eth0.VLAN when tagged

    @classmethod
    def build(cls, lab: Lab, machine: Node, vlan: int = 0) -> Lan:
        """switch (bridge br0), router (GATEWAY), lanhost (LANHOST) and MACHINE (HOST_IP, default
        via GATEWAY), each with eth0 on a switch port; with VLAN, tagged eth0.VLAN on every
        machine (the switch carries the tagged frames; needs the kernel's 8021q)."""
        lab.require("veth", "bridge")
        switch = lab.node("switch")
        switch.bridge("br0")
        lan_if = f"eth0.{vlan}" if vlan else "eth0"
        if vlan:
            lab.require("vlan")
        router, lanhost = lab.node("router"), lab.node("lanhost")
        for node, ip in ((router, GATEWAY), (lanhost, LANHOST), (machine, HOST_IP)):
            lab.veth(node, "eth0", switch, f"p-{node.name}", b_master="br0")
            if vlan:
                lab.vlan(node, lan_if, parent=(node, "eth0"), id=vlan)
            node.address(lan_if, f"{ip}/24")
            node.serve("tcp", 7)
        machine.route("default", via=GATEWAY)
        lanhost.route("default", via=GATEWAY)
        return cls(switch, router, lanhost, lan_if)
