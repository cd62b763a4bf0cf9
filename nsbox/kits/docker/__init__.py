"""The Docker kit: a Docker host (dockerd, `docker network create`, `docker run`) as
builder steps; see daemon.py. The rules come from nsbox.kits.dockerfw (moby's firewallers)."""

from nsbox.kits.docker.daemon import (CONTAINER_SYSCTLS, DEFAULT_SUBNET, DEFAULT_SUBNET6, LAYOUTS, Daemon,
                                      DaemonOptions, Endpoint, Network, Port, veth_name)

__all__ = ["CONTAINER_SYSCTLS", "DEFAULT_SUBNET", "DEFAULT_SUBNET6", "Daemon", "DaemonOptions", "Endpoint", "LAYOUTS",
           "Network", "Port", "veth_name"]
