"""The plan: one ordered list of steps the build, explain and errors share."""

from nsbox import recipe
from nsbox.plan import Firewall, Netlink, Netns, Sysctl, plan_lab


def _lab(containers: int = 2):
    return recipe.get("bridge-mode").build({"containers": str(containers)})


def test_namespaces_first_then_bridge_before_its_ports_then_configuration():
    steps = plan_lab(_lab()).steps
    kinds = [type(s.action) for s in steps]
    assert kinds[:4] == [Netns] * 4
    texts = [f"{s.node}: {s.text}" for s in steps]
    bridge = texts.index("host: ip link add docker0 address b2:7c:4e:1a:9d:30 txqueuelen 0 type bridge")
    port = next(i for i, t in enumerate(texts) if "master docker0 up" in t)
    assert 4 <= bridge < port
    # addresses come after every link exists; the firewall ends the host's part
    first_addr = next(i for i, t in enumerate(texts) if " addr add " in t)
    assert first_addr > max(i for i, s in enumerate(steps) if isinstance(s.action, Netlink) and s.action.creates)
    fw = next(i for i, s in enumerate(steps) if isinstance(s.action, Firewall))
    assert steps[fw].node == "host" and steps[fw + 1].node == "internet"


def test_sysctls_before_the_interface_comes_up():
    steps = [s for s in plan_lab(_lab()).steps if s.node == "c1"]
    texts = [s.text for s in steps]
    assert texts.index("sysctl -w net.ipv6.conf.eth0.disable_ipv6=1") < texts.index("ip link set eth0 up")
    assert next(s for s in steps if isinstance(s.action, Sysctl)).action.optional


def test_step_count_grows_with_the_lab():
    # per container: netns, veth, 3 sysctls (the runtime's ping_group_range and
    # ip_unprivileged_port_start, eth0's disable_ipv6), lo up, eth0 up, address, route = 9
    assert len(plan_lab(_lab(3)).steps) - len(plan_lab(_lab(2)).steps) == 9


def test_address_text_has_the_broadcast_nsbox_sets():
    texts = [s.text for s in plan_lab(_lab()).steps]
    assert "ip addr add 172.17.0.1/16 brd + dev docker0" in texts
