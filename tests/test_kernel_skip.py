"""A recipe that needs a kernel feature this kernel lacks is SKIPPED with the reason,
never crashed and never half-built. Whether the kernel has a feature is judged here
independently, with `ip link add` in a throwaway network namespace."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.tools("ip", "unshare"),
]

# feature -> the `ip` commands that need it (run inside `unshare --net`)
IP_PROBES = {
    "ipvlan": "ip link add p0 type bridge && ip link add t0 link p0 type ipvlan mode l2",
    "vlan": "ip link add p0 type bridge && ip link add t0 link p0 type vlan id 50",
    "dummy": "ip link add t0 type dummy",
    "geneve": "ip link add t0 type geneve id 42 remote 192.0.2.1",
    "wireguard": "ip link add t0 type wireguard",
    "macvlan": "ip link add p0 type bridge && ip link add t0 link p0 type macvlan mode bridge",
    "vxlan": "ip link add t0 type vxlan id 42 dstport 4789",
}

RECIPE = textwrap.dedent('''
    from nsbox.model import Lab
    from nsbox.recipe import recipe


    @recipe("needs-{feature}")
    def build(lab: Lab) -> None:
        """Two nodes on a veth; declares that it needs {feature}."""
        lab.require("veth", "{feature}")
        a = lab.node("a")
        lab.veth(lab.host, "eth0", a, "eth0")
        lab.host.address("eth0", "192.0.2.1/24")
        a.address("eth0", "192.0.2.2/24")
        lab.expect("host", "a", "icmp")
''')


def kernel_has(feature: str) -> bool:
    cp = subprocess.run(["unshare", "--net", "sh", "-c", IP_PROBES[feature]], capture_output=True)
    return cp.returncode == 0


@pytest.mark.parametrize("feature", sorted(IP_PROBES))
def test_missing_feature_skips_with_the_reason(feature, tmp_path, nsbox, host_unchanged) -> None:
    (tmp_path / f"needs_{feature}.py").write_text(RECIPE.format(feature=feature))
    run = nsbox.run("run", f"needs-{feature}", "--recipes", str(tmp_path), "--format", "json")
    if kernel_has(feature):
        assert run.returncode == 0 and run.result["status"] == "pass", run.describe()
    else:
        assert run.returncode == 4, run.describe()
        assert run.result["status"] == "skip"
        assert feature in run.result["skip_reason"]
        assert run.result["checks"] == [] and run.result["namespaces"] == {}, "a skipped recipe built something"
        assert run.json["summary"] == {"pass": 0, "fail": 0, "skip": 1}
    host_unchanged.assert_clean()


def test_a_skip_beside_a_pass_is_exit_0(tmp_path, nsbox, host_unchanged) -> None:
    lacking = [f for f in sorted(IP_PROBES) if not kernel_has(f)]
    if not lacking:
        pytest.skip("this kernel has every probed feature; nothing to skip")
    (tmp_path / "needs.py").write_text(RECIPE.format(feature=lacking[0]))
    run = nsbox.run("run", f"needs-{lacking[0]}", "bridge-mode", "--recipes", str(tmp_path))
    assert run.returncode == 0, run.describe()
    assert "SKIP" in run.stdout and f"lacks {lacking[0]}" in run.stdout
    assert run.stdout.rstrip().endswith("1 passed, 0 failed, 1 skipped")
    host_unchanged.assert_clean()
