"""ip6tables: a node's IPv6 tables (Firewall.tables6), in the iptables-save language."""

from nsbox.kinds.firewalls import register
from nsbox.kinds.firewalls.xtables import xtables_kind

KIND = register(xtables_kind(6, order=20))
