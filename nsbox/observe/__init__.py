"""Observers: what reads the kernel back without changing it. Conntrack dumps,
`ip route get`, neighbours, operstate, rule counters; used by verify and artifacts.
"""

from nsbox import wire as _wire  # noqa: F401  (pyroute2 registered on demand before any import of it)
