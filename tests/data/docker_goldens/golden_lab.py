"""Docker's firewall-test scenarios with a port published on both loopbacks
(`bindlh=true`: `-p 127.0.0.1:8080:80 -p [::1]:8080:80`) built as live labs on the kit:
the network `dummy` (192.168.0.0/24 and fd49:efd7:54aa::/64, as moby's iptabler test),
c1 at 192.168.0.2 / fd49:efd7:54aa::1 serving http/80, docker-proxy on 127.0.0.1:8080
and on [::1]:8080 (two binds of one port on distinct addresses, as the kernel and
dockerd allow). Scenario names follow the goldens' file names."""

from nsbox.kits import docker as kit
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

SCENARIOS = (
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=true",
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=true",
    "hairpin=false,internal=false,icc=false,masq=true,snat=true,gwm=nat,bindlh=true",
)


@recipe("docker-golden-lab", params=[Param("scenario", SCENARIOS[0], "the golden's scenario", choices=SCENARIOS)])
def build(lab: Lab, scenario: str) -> None:
    """One of Docker's bindlh=true firewall scenarios, live."""
    lab.require("veth", "bridge", "nat", "ipv6")
    o = dict(kv.split("=") for kv in scenario.split(","))
    d = kit.Daemon(lab, lab.host, userland_proxy=o["hairpin"] == "false", docker_user=False, host_forwarding=True)
    snat = o["snat"] == "true"
    net = d.network_create("dummy", bridge="br-dummy", subnet="192.168.0.0/24",
                           ipv6_subnet="fd49:efd7:54aa::/64", ipv6_gateway="fd49:efd7:54aa::fe",
                           icc=o["icc"] == "true", masquerade=o["masq"] == "true",
                           gateway_mode=o["gwm"],  # type: ignore[arg-type]
                           host_ipv4="192.168.123.0" if snat else None,
                           host_ipv6="fd34:d0d4:672f::123" if snat else None)
    c1 = d.run("c1", net, ip="192.168.0.2", ip6="fd49:efd7:54aa::1",
               publish=["127.0.0.1:8080:80", "[::1]:8080:80"])
    c1.serve("http", 80)
    lab.expect("host", "127.0.0.1", "http", 8080, answered_by=c1, name="http host->127.0.0.1:8080 (docker-proxy)")
    lab.expect("host", "::1", "http", 8080, answered_by=c1, name="http host->[::1]:8080 (docker-proxy)")
