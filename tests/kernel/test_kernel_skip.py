"""A recipe that needs a kernel feature this kernel lacks is SKIPPED with the reason,
never crashed and never half-built. Whether the kernel has a feature is judged here
independently, with `ip link add` in a throwaway network namespace."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

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


# --------------------------------------------------------------------------- a broken install is not a SKIP

def _one_line_install_error(run) -> str:
    """The run failed as a broken installation: exit 2, one line on stderr, no traceback, no report."""
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: "), run.describe()
    assert "Traceback" not in run.stderr and "SKIP" not in run.stdout and "lacks" not in run.stdout + run.stderr
    return lines[0]


@pytest.mark.parametrize("mode", [[], ["--on-host"]], ids=["sandbox", "on-host"])
def test_run_needs_no_python_iptables(mode, nsbox, host_unchanged) -> None:
    """NAT is probed in the backend the rules go to, not with python-iptables: a libxtables that
    python-iptables cannot load (PYTHON_IPTABLES_XTABLES_VERSION names a version no machine
    has) changes nothing for a run (it used to be an install error, exit 2)."""
    run = nsbox.run("run", "bridge-mode", *mode, "--format", "json",
                    env={"PYTHON_IPTABLES_XTABLES_VERSION": "999"})
    assert run.returncode == 0, run.describe()
    assert all(c["passed"] for c in run.result["checks"]), run.describe()
    host_unchanged.assert_clean()


PLANTED_EXTENSION = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("PLANTED_PROOF"), "w");
    if (f) { fputs("loaded\n", f); fclose(f); }
}
"""


@pytest.mark.tools("gcc")
@pytest.mark.parametrize("mode", [[], ["--on-host"]], ids=["sandbox", "on-host"])
def test_library_directories_from_the_environment_are_ignored(mode, nsbox, tmp_path, host_unchanged) -> None:
    """XTABLES_LIBDIR / IPTABLES_LIBDIR make iptables programs (and python-iptables) dlopen
    extensions from any directory: one left in root's environment must not run code as root.
    Every extension bridge-mode's rules use is planted there; none may be loaded, and the
    run must still work (with the system's own extensions)."""
    src = tmp_path / "planted.c"
    src.write_text(PLANTED_EXTENSION)
    evil = tmp_path / "lib"
    evil.mkdir()
    for name in ("libxt_standard", "libxt_tcp", "libxt_MASQUERADE", "libxt_conntrack", "libxt_addrtype",
                 "libxt_comment", "libipt_MASQUERADE", "libxt_physdev", "libxtables"):
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(evil / f"{name}.so"), str(src)], check=True)
    proof = tmp_path / "proof"
    run = nsbox.run("run", "bridge-mode", *mode, "--format", "json",
                    env={"XTABLES_LIBDIR": str(evil), "IPTABLES_LIBDIR": str(evil), "PLANTED_PROOF": str(proof)})
    assert not proof.exists(), "a library from XTABLES_LIBDIR/IPTABLES_LIBDIR was loaded"
    assert run.returncode == 0, run.describe()
    host_unchanged.assert_clean()


# The packages nsbox needs besides pyroute2 (and what rich imports): the throwaway venv gets these.
WITHOUT_PYROUTE2 = ("click", "rich", "markdown_it", "mdurl", "pygments")


def venv_without_pyroute2(tmp_path) -> str:
    """A venv of the distribution's python whose only extra packages are WITHOUT_PYROUTE2, linked
    from the venv the tests run in (so no network is needed). nsbox itself comes from PYTHONPATH."""
    import importlib.util
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    extra = tmp_path / "deps"
    extra.mkdir()
    for name in WITHOUT_PYROUTE2:
        spec = importlib.util.find_spec(name)
        assert spec and spec.submodule_search_locations, f"{name} is not installed where the tests run"
        (extra / name).symlink_to(list(spec.submodule_search_locations)[0])
    (Path(site) / "nsbox-deps.pth").write_text(f"{extra}\n")
    probe = subprocess.run([str(python), "-c", "import pyroute2"], capture_output=True)
    assert probe.returncode != 0, "the throwaway venv can import pyroute2"
    return str(python)


@pytest.mark.parametrize("mode", [[], ["--on-host"]], ids=["sandbox", "on-host"])
def test_missing_pyroute2_is_one_line_not_a_traceback(mode, tmp_path, kernel, host_unchanged) -> None:
    run = kernel.Nsbox(python=venv_without_pyroute2(tmp_path)).run("run", "bridge-mode", *mode)
    line = _one_line_install_error(run)
    assert "pyroute2" in line and "pip install pyroute2" in line and "install.sh" in line, line
    host_unchanged.assert_clean()
