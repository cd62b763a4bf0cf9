"""iptables: a node's IPv4 tables (Firewall.tables), in the iptables-save language."""

from nsbox.kinds.firewalls import register
from nsbox.kinds.firewalls.xtables import xtables_kind

KIND = register(xtables_kind(4, order=10))
