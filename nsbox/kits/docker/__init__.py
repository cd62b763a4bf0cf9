"""The Docker kit: a Docker host (dockerd, `docker network create`, `docker run`) as
builder steps; see daemon.py. Rules per layout live in rules_iptables.py."""

from nsbox.kits.docker.daemon import (DEFAULT_SUBNET, DEFAULT_SUBNET6, Daemon, DaemonOptions, Endpoint, Network,
                                      Port, veth_name)
from nsbox.kits.docker.rules_iptables import LAYOUTS

__all__ = ["DEFAULT_SUBNET", "DEFAULT_SUBNET6", "Daemon", "DaemonOptions", "Endpoint", "LAYOUTS", "Network", "Port",
           "veth_name"]
