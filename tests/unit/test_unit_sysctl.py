"""sysctl keys: how a key becomes a /proc/sys path, and which keys validation lets through.

No kernel: the file open in nsbox.kernel.sysctl is replaced by a recorder, so
nothing under /proc/sys is read or written."""

import io

import pytest

from nsbox.errors import ValidationError
from nsbox.kernel import sysctl
from nsbox.model import Lab
from nsbox.validate import validate


@pytest.fixture
def opened(monkeypatch):
    paths = []

    def fake_open(path, mode="r", *args, **kwargs):
        paths.append(path)
        return io.StringIO("1\n")

    monkeypatch.setattr(sysctl, "open", fake_open, raising=False)
    return paths


def test_key_maps_to_proc_sys_path(opened):
    sysctl.write("host", "net.ipv4.ip_forward", "1")
    sysctl.write("host", "net.ipv4.conf.docker0.route_localnet", "1")
    assert opened == ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/docker0/route_localnet"]


def test_slash_in_key_means_a_dot_in_the_interface_name(opened):
    sysctl.write("host", "net.ipv4.conf.flannel/1.forwarding", "1")
    assert opened == ["/proc/sys/net/ipv4/conf/flannel.1/forwarding"]


def test_key_components_of_only_slashes_are_rejected():
    lab = Lab("t")
    lab.host.sysctl("net.ipv4.//.//.kernel.panic", 1)
    with pytest.raises(ValidationError, match="not a per-namespace net.* key"):
        validate(lab)
