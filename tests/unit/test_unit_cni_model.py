"""Model additions for the CNI layouts: validation, one clear line each."""

from __future__ import annotations

import pytest

from nsbox.errors import ValidationError
from nsbox.wire import routing
from nsbox.wire.rtnl import IFA_F_NOPREFIXROUTE, address
from nsbox.model import Lab
from nsbox.model.firewall import Table
from nsbox.validate import validate


def _pod() -> Lab:
    lab = Lab("t")
    pod = lab.node("pod")
    lab.veth(pod, "eth0", lab.host, "veth1")
    lab.host.address("veth1", "10.89.0.1/32")
    return lab


def test_ptp_route_over_the_prefix_route_explains_the_plugin() -> None:
    lab = _pod()
    pod = lab.nodes["pod"]
    pod.address("eth0", "10.89.0.2/24")
    pod.route("10.89.0.1", dev="eth0", scope="link")
    pod.route("10.89.0.0/24", via="10.89.0.1", dev="eth0")
    with pytest.raises(ValidationError) as e:
        validate(lab)
    msg = str(e.value)
    assert "EEXIST" in msg and "ptp plugin deletes that prefix route" in msg and "noprefixroute=True" in msg
    assert "delete_route('10.89.0.0/24', dev=...)" in msg
    assert "\n" not in msg


def test_ptp_route_with_noprefixroute_validates() -> None:
    lab = _pod()
    pod = lab.nodes["pod"]
    pod.address("eth0", "10.89.0.2/24", noprefixroute=True)
    pod.route("10.89.0.1", dev="eth0", scope="link", src="10.89.0.2")
    pod.route("10.89.0.0/24", via="10.89.0.1", dev="eth0", src="10.89.0.2")
    validate(lab)


def test_noprefixroute_is_sent_in_ifa_flags() -> None:
    m = address(3, "10.89.0.2/24", noprefixroute=True)
    assert dict(m["attrs"])["IFA_FLAGS"] == IFA_F_NOPREFIXROUTE
    assert "IFA_FLAGS" not in dict(address(3, "10.89.0.2/24")["attrs"])


@pytest.mark.parametrize("kind,rtn", [("blackhole", 6), ("unreachable", 7), ("prohibit", 8)])
def test_typed_routes(kind: str, rtn: int) -> None:
    lab = _pod()
    lab.nodes["pod"].route("10.200.0.0/16", type=kind)
    validate(lab)
    r = lab.nodes["pod"].routes[-1]
    assert routing.route_text(r) == f"ip route add {kind} 10.200.0.0/16"
    m = routing.route_msg(r, lambda name: 1)
    assert (m["type"], m["scope"]) == (rtn, 0)


@pytest.mark.parametrize("kwargs,words", [
    ({"type": "blackhole", "dev": "eth0"}, "takes no gateway, device"),
    ({"type": "blackhole", "via": "10.89.0.1"}, "takes no gateway, device"),
    ({"type": "throw"}, "not one of blackhole"),
])
def test_typed_route_refusals(kwargs: dict, words: str) -> None:
    lab = _pod()
    lab.nodes["pod"].route("10.200.0.0/16", **kwargs)
    with pytest.raises(ValidationError, match=words):
        validate(lab)


def test_table_insert_positions() -> None:
    t = Table("nat")
    t.append("POSTROUTING", "-j RETURN")
    t.insert("POSTROUTING", '-m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ')
    t.insert("POSTROUTING", "-j ACCEPT", 3)
    assert [r.render() for r in t.chains["POSTROUTING"].rules] == [
        '-m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ', "-j RETURN", "-j ACCEPT"]
    for bad in (0, 5, "1"):
        with pytest.raises(ValidationError, match="position must be 1-4"):
            t.insert("POSTROUTING", "-j RETURN", bad)


@pytest.mark.parametrize("kwargs,words", [
    ({"dst": "10.0.0.300"}, "no IP address"),
    ({"dst": "10.0.0.3", "dev": "eth9"}, "no interface"),
    ({"dst": "10.0.0.3", "via": "10.89.0.1", "direct": True}, "direct=True means no gateway"),
    ({"dst": "10.0.0.3", "type": "local2"}, "route type"),
])
def test_expect_route_refusals(kwargs: dict, words: str) -> None:
    lab = _pod()
    dst = kwargs.pop("dst")
    with pytest.raises(ValidationError, match=words):
        lab.expect_route("pod", dst, **kwargs)


def test_expect_route_round_trips() -> None:
    from nsbox.model.serialize import lab_from_dict, lab_to_dict
    lab = _pod()
    lab.nodes["pod"].address("eth0", "10.89.0.2/24")
    c = lab.expect_route("pod", "10.89.0.1", direct=True, dev="eth0", type="unicast")
    again = lab_from_dict(lab_to_dict(lab))
    assert again.checks == [c]
    assert c.expected == "unicast direct dev eth0"


def test_delete_route_as_ptp_does() -> None:
    lab = _pod()
    pod = lab.nodes["pod"]
    pod.address("eth0", "10.89.0.2/24")
    pod.route("default", via="10.89.0.1", dev="eth0")
    pod.delete_route("10.89.0.0/24", dev="eth0")
    pod.route("10.89.0.1", dev="eth0", scope="link", src="10.89.0.2")
    pod.route("10.89.0.0/24", via="10.89.0.1", dev="eth0", src="10.89.0.2")
    validate(lab)
    d = pod.routes[1]
    assert routing.route_text(d) == "ip route del 10.89.0.0/24 dev eth0"
    assert routing.msg_type(d) == routing.RTM_DELROUTE
    m = routing.route_msg(d, lambda name: 2)
    assert (m["proto"], m["scope"]) == (0, 255)


def test_delete_route_of_nothing_is_refused() -> None:
    lab = _pod()
    lab.nodes["pod"].delete_route("10.77.0.0/24", dev="eth0")
    with pytest.raises(ValidationError, match="finds no such route .*ESRCH"):
        validate(lab)


@pytest.mark.parametrize("kwargs,words", [
    ({"ip": "169.254.1.300"}, "no IP address"),
    ({"ip": "169.254.1.1", "lladdr": "ee:ee"}, "not a MAC address"),
    ({"ip": "169.254.1.1", "dev": "eth7"}, "no interface"),
    ({"ip": "169.254.1.1", "state": "gone"}, "state 'gone'"),
])
def test_expect_neigh_refusals(kwargs: dict, words: str) -> None:
    lab = _pod()
    ip = kwargs.pop("ip")
    with pytest.raises(ValidationError, match=words):
        lab.expect_neigh("pod", ip, **kwargs)


def test_expect_neigh_round_trips() -> None:
    from nsbox.model.serialize import lab_from_dict, lab_to_dict
    lab = _pod()
    c = lab.expect_neigh("pod", "169.254.1.1", lladdr="EE:EE:EE:EE:EE:EE", dev="eth0")
    assert lab_from_dict(lab_to_dict(lab)).checks == [c]
    assert c.expected == "neighbour 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 resolved"
