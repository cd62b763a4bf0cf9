"""Models of what the real dockerd builds in tests/support/realdocker/dockerns.sh, for nsbox's
verifier to judge through verify/external.py. They are never realized: the nodes'
addresses are those the script and dockerd give, so probes resolve to the real ones
(and verify/external.py proves each is there before it sends anything)."""

from __future__ import annotations

from nsbox.model import Lab

UPLINK = "203.0.113.2"     # the Docker host's eth0 (dockerns.sh)
UPSTREAM = "203.0.113.1"   # the "internet" netns
GATEWAY = "172.17.0.1"     # docker0
WEB = "172.17.0.2"         # the first container on docker0


def publish_lab(proxy: bool) -> Lab:
    """`docker run -d --name web -p 8080:80 bb ...` on a daemon with the userland proxy
    on (dockerd's default) or off, as Docker 20.10 does it."""
    mode = "on" if proxy else "off"
    lab = Lab(f"real-docker-20.10-publish-proxy-{mode}", "docker run -p 8080:80 on the real dockerd 20.10")
    host = lab.host
    host.address("eth0", f"{UPLINK}/24")
    host.address("docker0", f"{GATEWAY}/16")
    internet = lab.node("internet")
    internet.address("eth0", f"{UPSTREAM}/24")
    web = lab.node("web")
    web.address("eth0", f"{WEB}/16")
    web.serve("http", 80)
    lab.virtual(UPLINK, proto="tcp", port=8080, node="host", name="published 8080")
    lab.virtual("127.0.0.1", proto="tcp", port=8080, node="host", name="host loopback 8080")
    lab.virtual("::1", proto="tcp", port=8080, node="host", name="host [::1]:8080")

    # From outside: PREROUTING DNAT to web:80, no SNAT, so web sees the client.
    lab.expect("internet", UPLINK, "http", 8080, answered_by="web", seen_from=UPSTREAM,
               name="http internet->host:8080 (published)")
    # Docker <= 27: the DOCKER chain's ACCEPT for the published container port matches
    # any input interface, so a neighbour routing straight to the container gets in
    # (Docker 28 added the raw-table DROP that nsbox's bridge-mode models).
    lab.expect("internet", "web", "http", 80, answered_by="web", seen_from=UPSTREAM,
               name="http internet->web:80 (direct routing to a published port)")
    # From the host itself: proxy on, docker-proxy on 127.0.0.1 dials web from the
    # gateway; proxy off, nat OUTPUT DNATs (route_localnet=1 on docker0) and
    # `-o docker0 -m addrtype --src-type LOCAL -j MASQUERADE` makes the source docker0's.
    lab.expect("host", "127.0.0.1", "http", 8080, answered_by="web", seen_from=GATEWAY,
               name="http host->127.0.0.1:8080")
    # IPv6 loopback: only docker-proxy listens on [::]:8080; there are no ip6tables rules.
    lab.expect("host", "::1", "http", 8080, allow=proxy, **({"answered_by": "web"} if proxy else {}),
               name="http host->[::1]:8080")
    return lab


USER_SUBNET_GW = "10.99.0.1"
U1, U2 = "10.99.0.2", "10.99.0.3"
C1, C2 = "172.17.0.2", "172.17.0.3"
EXAMPLE = "198.18.0.80"  # an A record of the lab's upstream DNS server; nobody owns it, nothing probes it


def modes_lab() -> Lab:
    """The other network modes side by side on one real dockerd: c1, c2 on docker0; cm
    with `--network container:c1`; h1 with `--network host`; n1 with `--network none`;
    u1, u2 on a user network (`docker network create --subnet 10.99.0.0/24 mynet`)."""
    lab = Lab("real-docker-20.10-modes", "container, host and none modes and a user network on dockerd 20.10")
    host = lab.host
    host.address("eth0", f"{UPLINK}/24")
    host.address("docker0", f"{GATEWAY}/16")
    lab.node("internet").address("eth0", f"{UPSTREAM}/24").serve_dns(53, {"www.example.test": EXAMPLE})
    c1 = lab.node("c1").address("eth0", f"{C1}/16")
    lab.node("c2").address("eth0", f"{C2}/16")
    lab.node("n1")  # only lo
    u1 = lab.node("u1").address("eth0", f"{U1}/24")
    lab.node("u2").address("eth0", f"{U2}/24")
    u1.serve("tcp", 7)
    c1.serve("tcp", 7)
    lab.container("cm", "c1").serve("tcp", 9000)
    lab.container("h1", "host").serve("tcp", 9001)

    # --network container:c1: cm's server is reached at c1's address; cm's own probes leave from c1's netns.
    lab.expect("c2", "cm", "tcp", 9000, answered_by="cm", name="tcp c2->cm:9000 (container mode)")
    lab.expect("cm", "c1", "tcp", 7, answered_by="c1", name="tcp cm->c1:7 (same netns)")
    # --network host: h1 listens in the host's netns, on its uplink address.
    lab.expect("internet", "h1", "tcp", 9001, answered_by="h1", name="tcp internet->h1:9001 (host mode)")
    # --network none: only lo, no route anywhere.
    lab.expect("n1", UPSTREAM, "icmp", allow=False, name="icmp n1->internet (none mode)")
    # A user network: its members reach each other; DOCKER-ISOLATION-STAGE-2 drops
    # what crosses from one Docker bridge to another.
    lab.expect("u2", "u1", "tcp", 7, answered_by="u1", name="tcp u2->u1 (user network)")
    lab.expect("u2", "c1", "tcp", 7, allow=False, name="tcp u2->c1 (isolation)",
               dropped_by=("host", "filter", "DOCKER-ISOLATION-STAGE-2", "-o docker0 -j DROP"))
    # Embedded DNS, asked with nsbox's own DNS probe: 127.0.0.11:53 in u2's netns is
    # DNATed by u2's own nat table to dockerd's resolver, which knows u1 and not c1
    # (names resolve on user networks only, and only within the network).
    # Names it does not know it forwards to the upstream in resolv.conf (dockerns.sh makes
    # that the "internet" node, where nsbox's DNS server answers), from u2's netns
    # through the host's MASQUERADE; an NXDOMAIN from there comes back as it is.
    lab.expect_dns("u2", "127.0.0.11", "u1", U1, check_name="dns u2: u1 (embedded DNS)")
    lab.expect_dns("u2", "127.0.0.11", "www.example.test", EXAMPLE, check_name="dns u2: www.example.test (forwarded)")
    lab.expect_dns("u2", "127.0.0.11", "c1", None, check_name="dns u2: c1 unknown (another network)")
    return lab
