"""Models of what the real dockerd builds in tests/realdocker/dockerns.sh, for nsbox's
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
