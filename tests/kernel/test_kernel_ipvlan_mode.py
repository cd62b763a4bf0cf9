"""ipvlan-mode: built for real where the kernel has ipvlan; here it SKIPs with the reason,
and the reason is true (ip itself cannot make an ipvlan link)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT)]


def _kernel_has_ipvlan() -> bool:
    p = subprocess.run(["unshare", "--net", "sh", "-c",
                        "ip link add p type veth peer name q && ip link add i link p type ipvlan mode l2"],
                       capture_output=True, text=True, timeout=20)
    return p.returncode == 0


@pytest.mark.parametrize("mode", ["l2", "l3"])
def test_ipvlan_mode(nsbox, mode):
    r = nsbox.run("run", "ipvlan-mode", "--set", f"mode={mode}", "--format", "json", "--timeout", "0.3")
    if _kernel_has_ipvlan():
        assert r.returncode == 0, r.describe()
        assert all(c["passed"] for c in r.result["checks"])
    else:
        assert r.returncode == 4, r.describe()
        assert r.result["status"] == "skip"
        assert r.result["skip_reason"] == "this kernel lacks ipvlan (Operation not supported)"
        assert r.result["namespaces"] == {}  # nothing was built
