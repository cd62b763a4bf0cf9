"""The embedded DNS server's NAT rules inside a container on a user-defined network.

A port of moby's `daemon/libnetwork/resolver_unix.go` (setupIptablesNAT, and
setupNftablesNAT for `--firewall-backend=nftables`; the iptables half is unchanged since
20.10). dockerd's resolver listens on 127.0.0.11 at a random UDP and a random TCP port in
the container's netns; these rules send the container's queries to 127.0.0.11:53 there,
and give the replies source port 53 back. Pure, like the rest of dockerfw.
"""

from __future__ import annotations

from nsbox.kits.dockerfw.xtables import Ruleset

RESOLVER_IP = "127.0.0.11"
DNS_PORT = 53
OUTPUT_CHAIN = "DOCKER_OUTPUT"
POSTROUTING_CHAIN = "DOCKER_POSTROUTING"
NFT_TABLE = "docker-dns"


def iptables_rules(udp_port: int, tcp_port: int, resolver_ip: str = RESOLVER_IP) -> dict[str, list[str]]:
    """The container's nat table (`iptables-save -t nat` lines) once the resolver started."""
    rs = Ruleset()
    ip = f"{resolver_ip}/32"
    rs.new_chain("nat", OUTPUT_CHAIN)
    rs.insert("nat", "OUTPUT", f"-d {ip} -j {OUTPUT_CHAIN}")
    rs.new_chain("nat", POSTROUTING_CHAIN)
    rs.insert("nat", "POSTROUTING", f"-d {ip} -j {POSTROUTING_CHAIN}")
    # moby inserts each rule at the top: udp DNAT, udp SNAT, tcp DNAT, tcp SNAT.
    rs.insert("nat", OUTPUT_CHAIN, f"-d {ip} -p udp -m udp --dport {DNS_PORT} -j DNAT --to-destination {resolver_ip}:{udp_port}")
    rs.insert("nat", POSTROUTING_CHAIN, f"-s {ip} -p udp -m udp --sport {udp_port} -j SNAT --to-source :{DNS_PORT}")
    rs.insert("nat", OUTPUT_CHAIN, f"-d {ip} -p tcp -m tcp --dport {DNS_PORT} -j DNAT --to-destination {resolver_ip}:{tcp_port}")
    rs.insert("nat", POSTROUTING_CHAIN, f"-s {ip} -p tcp -m tcp --sport {tcp_port} -j SNAT --to-source :{DNS_PORT}")
    return rs.tables(["nat"])


def nftables_rules(udp_port: int, tcp_port: int, resolver_ip: str = RESOLVER_IP) -> str:
    """`nft list table ip docker-dns` in the container (nftables backend)."""
    c = "counter packets 0 bytes 0"
    return (
        f"table ip {NFT_TABLE} {{\n"
        "\tchain dns-dnat {\n"
        "\t\ttype nat hook output priority dstnat; policy accept;\n"
        f"\t\tip daddr {resolver_ip} udp dport {DNS_PORT} {c} dnat to {resolver_ip}:{udp_port}\n"
        f"\t\tip daddr {resolver_ip} tcp dport {DNS_PORT} {c} dnat to {resolver_ip}:{tcp_port}\n"
        "\t}\n\n"
        "\tchain dns-snat {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f"\t\tip saddr {resolver_ip} udp sport {udp_port} {c} snat to :{DNS_PORT}\n"
        f"\t\tip saddr {resolver_ip} tcp sport {tcp_port} {c} snat to :{DNS_PORT}\n"
        "\t}\n"
        "}\n"
    )
