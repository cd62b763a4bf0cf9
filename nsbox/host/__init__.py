"""The host: network namespaces (create, enter, remove), the rtnetlink channel into
one, the on-host journal and lock, the firewall programs this host has, and the
kernel feature probes.
"""

from nsbox import wire as _wire  # noqa: F401  (pyroute2 registered on demand before any import of it)
