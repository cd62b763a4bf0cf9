"""The lab model: pure data, no kernel access."""

from nsbox.model.checks import BindCheck, Check, InterfacesCheck, ConntrackCheck, LinkCheck, ReachCheck
from nsbox.model.firewall import Chain, Firewall, Table
from nsbox.model.lab import HOST, Address, Fdb, Interface, Lab, Neigh, Node, PolicyRule, Route, Server, VethPair
from nsbox.model.rules import Rule, parse_rule

__all__ = [
    "HOST", "Address", "BindCheck", "InterfacesCheck", "Chain", "Check", "ConntrackCheck", "Firewall", "Interface", "Lab", "LinkCheck", "Node",
    "ReachCheck", "Route", "PolicyRule", "Neigh", "Fdb", "Rule", "Server", "Table", "VethPair", "parse_rule",
]
