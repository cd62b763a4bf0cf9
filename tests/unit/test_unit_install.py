"""install.sh decides what to install from what is there (NSBOX_INSTALL_DRY_RUN=1 prints it and
changes nothing): Debian's docker.io only when no dockerd of any kind is installed (on a host with
Docker CE, /usr/bin/dockerd and the docker-ce package, it must not install a second one beside
it), and the real CNI plugins always.

Each case runs install.sh with a PATH of its own (real dirname/id/grep, a fake dpkg-query that
answers from FAKE_INSTALLED, a fake dockerd where the case has one) in a private mount namespace
where this host's own /usr/sbin/dockerd (if any) is covered by a non-executable file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.paths import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (a private mount namespace hides this host's dockerd)")

FAKE_DPKG = """#!/bin/sh
# dpkg-query -W -f FORMAT PACKAGE: installed when PACKAGE is in $FAKE_INSTALLED
for p in $FAKE_INSTALLED; do [ "$p" = "$4" ] && { printf 'install ok installed'; exit 0; }; done
exit 1
"""
HIDE = """
for d in /usr/sbin/dockerd /usr/bin/dockerd /usr/local/bin/dockerd; do
    [ -e "$d" ] && { "$MOUNT" --bind "$EMPTY" "$d" || exit 99; }
done
exec /bin/sh "$INSTALL"
"""


def dry_run(tmp_path: Path, installed: list[str], dockerd_on_path: bool) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "grep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "dpkg-query").write_text(FAKE_DPKG)
    (bin_dir / "dpkg-query").chmod(0o755)
    if dockerd_on_path:
        (bin_dir / "dockerd").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "dockerd").chmod(0o755)
    empty = tmp_path / "empty"
    empty.write_text("")
    env = {"PATH": str(bin_dir), "NSBOX_INSTALL_DRY_RUN": "1", "FAKE_INSTALLED": " ".join(installed),
           "EMPTY": str(empty), "INSTALL": str(REPO / "install.sh"), "NSBOX_VENV": str(tmp_path / "venv"),
           "NSBOX_BIN_LINK": "", "MOUNT": shutil.which("mount") or "mount"}
    cp = subprocess.run([shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", HIDE],
                        env=env, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    apt = next(ln for ln in cp.stdout.splitlines() if ln.startswith("apt:"))
    return apt.split()[1:]


def test_no_dockerd_anywhere_installs_debians(tmp_path: Path) -> None:
    apt = dry_run(tmp_path, [], dockerd_on_path=False)
    assert "docker.io" in apt and "busybox-static" in apt and "containernetworking-plugins" in apt


def test_docker_ce_is_not_doubled_with_docker_io(tmp_path: Path) -> None:
    # Docker CE: dockerd in /usr/bin (here: on PATH), packages docker-ce and containerd.io
    apt = dry_run(tmp_path, ["docker-ce", "containerd.io"], dockerd_on_path=True)
    assert "docker.io" not in apt


@pytest.mark.parametrize("package", ["docker-ce", "moby-engine", "docker.io"])
def test_a_docker_package_without_dockerd_on_path_counts(tmp_path: Path, package: str) -> None:
    assert "docker.io" not in dry_run(tmp_path, [package], dockerd_on_path=False)


def test_installed_cni_plugins_and_busybox_are_not_reinstalled(tmp_path: Path) -> None:
    apt = dry_run(tmp_path, ["containernetworking-plugins", "busybox-static", "docker.io"], dockerd_on_path=False)
    assert "containernetworking-plugins" not in apt and "busybox-static" not in apt and "docker.io" not in apt
