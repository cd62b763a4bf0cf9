"""Recipes for tests/kernel/test_kernel_cni_model.py: the CNI ptp pod written faithfully
(noprefixroute), the dropping route types, and expect_route judged by the kernel."""

from nsbox.recipe import Param, recipe


@recipe("ptp-pod", params=[Param("broken", 0, "1: keep the kernel's prefix route instead of ptp's `SUBNET via GW` (mutation)",
                                 min=0, max=1)])
def ptp_pod(lab, broken):
    """Two pods attached as the CNI ptp plugin attaches them: pod /24 without its prefix
    route, `GW dev eth0 scope link`, `SUBNET via GW`, default via GW; gateway /32 on each
    host veth, pod /32 routes on the node."""
    node = lab.host
    node.sysctl("net.ipv4.ip_forward", 1)
    gw = "10.89.0.1"
    for i, ip in ((1, "10.89.0.2"), (2, "10.89.0.3")):
        pod = lab.node(f"pod{i}")
        lab.veth(pod, "eth0", node, f"veth{i}")
        node.address(f"veth{i}", f"{gw}/32")
        node.route(f"{ip}/32", dev=f"veth{i}", scope="host")
        # pod1 as the plugin does it (address, default route, delete the kernel's prefix
        # route, gateway and subnet routes); pod2 with a noprefixroute address instead.
        pod.address("eth0", f"{ip}/24", noprefixroute=(i == 2 and not broken))
        if i == 1:
            pod.route("default", via=gw, dev="eth0")
            if not broken:
                pod.delete_route("10.89.0.0/24", dev="eth0")
        pod.route(gw, dev="eth0", scope="link", src=ip)
        if not broken:
            pod.route("10.89.0.0/24", via=gw, dev="eth0", src=ip)
        if i == 2:
            pod.route("default", via=gw, dev="eth0")
        pod.serve("tcp", 7)
        # Dropping route types, each judged by the kernel's lookup.
        pod.route("10.200.0.0/16", type="blackhole")
        pod.route("10.201.0.0/16", type="unreachable")
        pod.route("10.202.0.0/16", type="prohibit")
    lab.expect("pod1", "pod2", "tcp", 7)
    lab.expect("pod2", "pod1", "tcp", 7)
    lab.expect_route("pod2", "10.89.0.2", via=gw, dev="eth0", src="10.89.0.3", name="route pod2: subnet via gateway")
    lab.expect_route("pod1", "10.89.0.3", dev="eth0", src="10.89.0.2", name="route pod1: subnet via gateway",
                     via=gw)
    lab.expect_route("pod1", gw, direct=True, dev="eth0", name="route pod1: gateway on the link")
    lab.expect_route("host", "10.89.0.3", direct=True, dev="veth2", name="route node: pod2 /32")
    for dst, kind in (("10.200.0.1", "blackhole"), ("10.201.0.1", "unreachable"), ("10.202.0.1", "prohibit")):
        lab.expect_route("pod1", dst, type=kind, name=f"route pod1: {kind}")
