"""Docker 29's iptables-save for the default bridge, typed from the reference.

Source: shared/reference/dataplane.md section 1a (moby's golden files), without
the published-port lines (`-p 8080:80`): bridge-mode publishes no port. Typed by
hand, not derived from the recipe, so the tests compare two independent texts.
"""

from __future__ import annotations


def docker29_rules(containers: int) -> dict[str, list[str]]:
    """iptables-save of a Docker 29 host (iptables backend) with CONTAINERS containers on
    docker0 and no published port, table -> chain and rule lines, counters dropped.
    From dataplane.md 1a minus the published-port lines (-A DOCKER ... --dport 80 -j ACCEPT
    and the DNAT)."""
    ips = [f"172.17.{(i + 1) // 256}.{(i + 1) % 256}" for i in range(1, containers + 1)]
    return {
        "raw": [":PREROUTING ACCEPT", ":OUTPUT ACCEPT"]
        + [f"-A PREROUTING -d {ip}/32 ! -i docker0 -j DROP" for ip in ips],
        "filter": [
            ":INPUT ACCEPT",
            ":FORWARD DROP",
            ":OUTPUT ACCEPT",
            ":DOCKER -",
            ":DOCKER-BRIDGE -",
            ":DOCKER-CT -",
            ":DOCKER-FORWARD -",
            ":DOCKER-INTERNAL -",
            ":DOCKER-USER -",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -j DOCKER-FORWARD",
            "-A DOCKER ! -i docker0 -o docker0 -j DROP",
            "-A DOCKER-BRIDGE -o docker0 -j DOCKER",
            "-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A DOCKER-FORWARD -j DOCKER-CT",
            "-A DOCKER-FORWARD -j DOCKER-INTERNAL",
            "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
            "-A DOCKER-FORWARD -i docker0 -j ACCEPT",
        ],
        "nat": [
            ":PREROUTING ACCEPT",
            ":INPUT ACCEPT",
            ":OUTPUT ACCEPT",
            ":POSTROUTING ACCEPT",
            ":DOCKER -",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        ],
    }
