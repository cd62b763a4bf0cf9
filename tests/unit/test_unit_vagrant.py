"""The Vagrant lab (vagrant/), checked without a hypervisor: the Vagrantfile parses
(ruby -c) and validates as Vagrant reads it (`vagrant validate`, for each box choice),
a misspelt setting fails that validation (so the check can fail), and the shell
scripts pass shellcheck."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.paths import REPO

VAGRANT = REPO / "vagrant"


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


def _vagrant_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Vagrant's state (boxes, plugins, .vagrant/) goes to the test's own folder.
    return {"VAGRANT_HOME": str(tmp_path / "home"), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
            "VAGRANT_CHECKPOINT_DISABLE": "1", **extra}


@pytest.mark.tools("ruby")
def test_vagrantfile_is_ruby() -> None:
    cp = _run(["ruby", "-c", "Vagrantfile"], VAGRANT)
    assert cp.returncode == 0 and "Syntax OK" in cp.stdout, cp.stderr


@pytest.mark.tools("vagrant")
@pytest.mark.parametrize("box", ["ubuntu2404", "debian12"])
def test_vagrant_validates_each_box(tmp_path: Path, box: str) -> None:
    cp = _run(["vagrant", "validate", "--ignore-provider"], VAGRANT, _vagrant_env(tmp_path, NSBOX_BOX=box))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "validated successfully" in cp.stdout


@pytest.mark.tools("vagrant")
def test_vagrant_validate_catches_a_misspelt_setting(tmp_path: Path) -> None:
    """Mutation: the same Vagrantfile with one setting misspelt must fail, or the
    validation above proves nothing."""
    copy = tmp_path / "lab"
    copy.mkdir()
    text = (VAGRANT / "Vagrantfile").read_text()
    assert "config.vm.hostname" in text
    (copy / "Vagrantfile").write_text(text.replace("config.vm.hostname", "config.vm.hostnam"))
    shutil.copy(VAGRANT / "provision.sh", copy / "provision.sh")
    cp = _run(["vagrant", "validate", "--ignore-provider"], copy, _vagrant_env(tmp_path))
    assert cp.returncode != 0
    assert "hostnam" in cp.stdout + cp.stderr


def test_vagrantfile_provisions_with_the_install_command() -> None:
    """The provisioner is provision.sh, which runs the README's install command,
    then doctor and every recipe."""
    vf = (VAGRANT / "Vagrantfile").read_text()
    assert 'path: "provision.sh"' in vf
    script = (VAGRANT / "provision.sh").read_text()
    lines = [ln.strip() for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert any(ln.startswith('"$src/install.sh"') for ln in lines)
    assert any('doctor' in ln and ln.startswith('"$nsbox"') for ln in lines)
    assert any('run --all' in ln and ln.startswith('"$nsbox"') for ln in lines)
    assert os.access(VAGRANT / "provision.sh", os.X_OK)


@pytest.mark.tools("shellcheck")
@pytest.mark.parametrize("script", ["vagrant/provision.sh", "vagrant/part-up.sh", "install.sh", ".ci/run",
                                    ".ci/kernel-vm-setup"])
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    cp = _run(["shellcheck", script], REPO)
    assert cp.returncode == 0, cp.stdout + cp.stderr


# --------------------------------------------------------------------------- Vagrantfile.multi

@pytest.mark.tools("ruby")
def test_multi_vagrantfile_is_ruby() -> None:
    cp = _run(["ruby", "-c", "Vagrantfile.multi"], VAGRANT)
    assert cp.returncode == 0 and "Syntax OK" in cp.stdout, cp.stderr


@pytest.mark.tools("vagrant")
def test_multi_vagrantfile_validates_two_machines(tmp_path: Path) -> None:
    cp = _run(["vagrant", "validate", "--ignore-provider"], VAGRANT,
              _vagrant_env(tmp_path, VAGRANT_VAGRANTFILE="Vagrantfile.multi"))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "validated successfully" in cp.stdout and "node1" in cp.stdout and "node2" in cp.stdout


@pytest.mark.tools("vagrant")
def test_multi_vagrant_validate_catches_a_misspelt_setting(tmp_path: Path) -> None:
    copy = tmp_path / "lab"
    copy.mkdir()
    text = (VAGRANT / "Vagrantfile.multi").read_text()
    assert "m.vm.hostname" in text
    (copy / "Vagrantfile.multi").write_text(text.replace("m.vm.hostname", "m.vm.hostnam"))
    for f in ("provision.sh", "part-up.sh"):
        shutil.copy(VAGRANT / f, copy / f)
    cp = _run(["vagrant", "validate", "--ignore-provider"], copy,
              _vagrant_env(tmp_path, VAGRANT_VAGRANTFILE="Vagrantfile.multi"))
    assert cp.returncode != 0
    assert "hostnam" in cp.stdout + cp.stderr


def test_multi_vagrantfile_brings_up_one_part_on_each_vm() -> None:
    """Each VM: the single lab's provisioning, then its part of pod-to-pod (cni=vxlan) with the
    private network's address as the underlay; node1's VM holds the outside machine too."""
    vf = (VAGRANT / "Vagrantfile.multi").read_text()
    assert 'path: "provision.sh"' in vf and 'path: "part-up.sh"' in vf
    assert '"node1" => ["192.168.56.11", "node1,outside"]' in vf and '"node2" => ["192.168.56.12", "node2"]' in vf
    script = (VAGRANT / "part-up.sh").read_text()
    assert '"$nsbox" up pod-to-pod --set cni=vxlan --part "$part" --underlay "$underlay"' in script
    assert os.access(VAGRANT / "part-up.sh", os.X_OK)
