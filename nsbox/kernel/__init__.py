"""Effects: what changes the kernel. realize (apply a plan), links, sysctl writes,
iptables/nft apply, the wait for IPv6 duplicate address detection, and the
validations that try rules in a throwaway netns.
"""

from nsbox import wire as _wire  # noqa: F401  (pyroute2 registered on demand before any import of it)
