"""nsbox/vm without booting anything: what --kernel accepts, how results come back from a
guest, and the per-kernel reports (matrix, differences, JSON/JUnit/KTAP)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nsbox.errors import UsageError
from nsbox.verify.results import CheckResult, Endpoint, RecipeResult
from nsbox.report import kernels as matrix
from nsbox.vm import guest, kernel, results
from tests.support.paths import REPO



def _bzimage(path: Path, version: bytes = b"6.9.0-test (me@here) #1 SMP") -> Path:
    """A file with an x86 boot-protocol header: the magic and a version string pointer."""
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x300 - 0x200).to_bytes(2, "little")
    data[0x300:0x300 + len(version)] = version
    path.write_bytes(bytes(data))
    return path


def test_a_bzimage_path_is_named_by_its_release(tmp_path):
    k = kernel.resolve(str(_bzimage(tmp_path / "bzImage")))
    assert (k.label, k.release, k.image) == ("6.9.0-test", "6.9.0-test", str(tmp_path / "bzImage"))


def test_a_build_tree_boots_its_bzimage(tmp_path):
    (tmp_path / "arch/x86/boot").mkdir(parents=True)
    _bzimage(tmp_path / "arch/x86/boot/bzImage")
    k = kernel.resolve(str(tmp_path))
    assert k.image == str(tmp_path) and k.bzimage == str(tmp_path / "arch/x86/boot/bzImage")
    assert k.label == "6.9.0-test"


@pytest.mark.parametrize("spec, says", [
    ("no-such-kernel-1.0", "no such kernel"),
    ("/etc/hostname", "is not an x86 kernel image"),
    ("/nonexistent/bzImage", "no such file or directory"),
    ("../x\n", "not a kernel"),
    ("6.1;rm", "not a kernel version"),
])
def test_what_is_not_a_kernel_is_a_usage_error(spec, says):
    with pytest.raises(UsageError, match=says):
        kernel.resolve(spec)


def test_a_directory_that_is_not_a_build_tree(tmp_path):
    with pytest.raises(UsageError, match="not a kernel build tree"):
        kernel.resolve(str(tmp_path))


def test_the_same_kernel_twice_is_refused(tmp_path):
    img = str(_bzimage(tmp_path / "bzImage"))
    with pytest.raises(UsageError, match="the same kernel"):
        kernel.resolve_all((img, img))
    with pytest.raises(UsageError, match="the same kernel"):
        kernel.resolve_all(("host", "host"))


def test_bad_kernel_exits_2_in_one_line_before_anything_boots():
    p = subprocess.run([sys.executable, "-m", "nsbox", "run", "bridge-mode", "--kernel", "no-such-kernel-1.0"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "no such kernel" in p.stderr
    assert p.stdout == ""


def test_then_is_refused_with_kernel():
    p = subprocess.run([sys.executable, "-m", "nsbox", "run", "bridge-mode", "--kernel", "host", "--then", "true"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (p.returncode, p.stderr.strip()) == (2, "nsbox: error: --then cannot be used with --kernel "
                                                   "(the labs live in throwaway VMs)")


def test_the_guest_runs_this_nsbox_isolated_from_its_cwd():
    """The package directory is passed in; -I keeps the cwd and PYTHON* variables out."""
    cmd = guest.command(["run", "x"])
    assert cmd[:3] == [sys.executable, "-I", "-c"] and repr(str(REPO)) in cmd[3]
    assert cmd[4:] == ["run", "x"]
    script = guest.script(["run", "a b"])
    assert "'a b'" in script and 'echo $? >"$NSBOX_VM_DIR/rc"' in script


def _result(name: str, status: str, *checks: tuple[str, bool, str], reason: str | None = None) -> RecipeResult:
    return RecipeResult(name, status, skip_reason=reason,  # type: ignore[arg-type]
                        checks=[CheckResult(n, "reach", "allow", o, p, local=Endpoint("10.0.0.1", 5))
                                for n, p, o in checks])


def test_results_come_back_from_json_as_they_left():
    from nsbox.report import json_report

    sent = [_result("a", "fail", ("c1", True, "allow"), ("c2", False, "deny")), _result("b", "skip", reason="no x")]
    assert results.parse_report(json_report.render(sent).encode()) == sent


@pytest.mark.parametrize("kind", __import__("nsbox.kinds.checks", fromlist=["result_kinds"]).result_kinds())
def test_every_check_kind_comes_back_from_a_guest(kind):
    """A guest's report with a route, neigh or spread check (any kind the verifier has)
    is a report, not "a check without a name, kind and verdict"."""
    from nsbox.report import json_report

    sent = [RecipeResult("a", "pass", checks=[CheckResult(f"{kind} check", kind, "x", "x", True, "")])]
    got = results.parse_report(json_report.render(sent).encode())
    assert [c.kind for c in got[0].checks] == [kind]


@pytest.mark.parametrize("data", [b"", b"nope", b"[]", b'{"results": [1]}', b'{"results": [{"recipe": "a"}]}',
                                  b'{"results": [{"recipe": "a", "status": "pass", "checks": [{"name": 1}]}]}',
                                  b'{"results": [{"recipe": "a", "status": "ok"}]}'])
def test_a_guest_report_that_is_not_one_is_an_error_not_a_crash(data):
    with pytest.raises(results.BadReport):
        results.parse_report(data)


def test_fields_of_the_wrong_type_are_dropped():
    got = results.recipe_result({"recipe": "a", "status": "pass", "duration_s": "evil", "namespaces": [1],
                                 "then_status": True, "checks": []})
    assert (got.duration_s, got.namespaces, got.then_status) == (0.0, {}, None)


def _runs() -> list[matrix.KernelRun]:
    host = matrix.KernelRun("host", "6.18", "host", [
        _result("ipvlan-mode", "skip", reason="this kernel lacks ipvlan (Operation not supported)"),
        _result("bridge-mode", "fail", ("tcp c1->c2", False, "deny"), ("icmp", True, "allow"))])
    guest_ = matrix.KernelRun("6.1.0-57-amd64", "6.1.0-57-amd64", "QEMU/TCG", [
        _result("ipvlan-mode", "pass", ("tcp/7 c1->c2", True, "allow")),
        _result("bridge-mode", "pass", ("tcp c1->c2", True, "allow"), ("icmp", True, "allow"))])
    return [host, guest_]


def test_a_check_that_passes_on_one_kernel_and_fails_on_another_is_a_difference():
    diffs = matrix.differences(_runs())
    assert [(d.recipe, d.check, d.kernels) for d in diffs] == [
        ("bridge-mode", "tcp c1->c2", {"host": (False, "deny"), "6.1.0-57-amd64": (True, "allow")})]


def test_text_matrix_shows_kernels_side_by_side_with_reasons():
    lines = matrix.matrix_lines(_runs())
    assert lines[1].split() == ["recipe", "host", "6.1.0-57-amd64"]
    assert lines[2].split() == ["ipvlan-mode", "SKIP", "[1]", "PASS"]
    assert lines[3].split() == ["bridge-mode", "FAIL", "[2]", "PASS"]
    assert "[1] host: ipvlan-mode: this kernel lacks ipvlan (Operation not supported)" in lines[4]
    assert "bridge-mode: tcp c1->c2: FAIL on host (observed deny); PASS on 6.1.0-57-amd64 (observed allow)" \
        in "\n".join(lines)


def test_json_report_has_the_matrix_and_every_result_with_its_kernel():
    doc = json.loads(matrix.render(_runs(), "json"))
    assert doc["matrix"]["ipvlan-mode"] == {
        "host": {"status": "skip", "reason": "this kernel lacks ipvlan (Operation not supported)"},
        "6.1.0-57-amd64": {"status": "pass", "reason": ""}}
    assert [(r["kernel"], r["recipe"]) for r in doc["results"]] == [
        ("host", "ipvlan-mode"), ("host", "bridge-mode"), ("6.1.0-57-amd64", "ipvlan-mode"),
        ("6.1.0-57-amd64", "bridge-mode")]
    assert doc["summary"] == {"pass": 2, "fail": 1, "skip": 1}
    assert doc["differences"][0]["kernels"]["host"] == {"passed": False, "observed": "deny"}


def test_junit_has_a_suite_per_kernel_and_recipe_and_is_valid():
    import xmlschema

    text = matrix.render(_runs(), "junit")
    xmlschema.XMLSchema(str(REPO / "tests/data/junit-10.xsd")).validate(text)
    root = ET.fromstring(text)
    assert [s.get("name") for s in root] == ["host: ipvlan-mode", "host: bridge-mode", "6.1.0-57-amd64: ipvlan-mode",
                                             "6.1.0-57-amd64: bridge-mode"]
    assert root.get("failures") == "1"


def test_ktap_has_one_block_per_kernel():
    lines = matrix.render(_runs(), "ktap").splitlines()
    assert lines[:2] == ["KTAP version 1", "1..2"]
    assert "not ok 1 kernel host" in lines and "ok 2 kernel 6.1.0-57-amd64" in lines
    assert "  ok 1 ipvlan-mode # SKIP this kernel lacks ipvlan (Operation not supported)" in lines
    assert lines[-1] == "# Totals: pass:4 fail:1 xfail:0 xpass:0 skip:1 error:0"


def _fake_qemu(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "qemu"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return str(exe)


def test_kvm_trial_succeeds_when_the_kernel_gets_to_its_root_panic(tmp_path):
    from nsbox.vm import accel

    qemu = _fake_qemu(tmp_path, 'echo "Linux version 6.1"; echo "Kernel panic - not syncing: VFS: Unable to mount"; '
                                "exec sleep 30")
    took, reached = accel._trial("/dev/null", qemu, None)  # noqa: SLF001
    assert reached and took < 10


def test_kvm_trial_fails_when_the_guest_hangs_or_qemu_aborts(tmp_path, monkeypatch):
    from nsbox.vm import accel

    monkeypatch.setattr(accel, "TRIAL_S", 1.0)
    hang = _fake_qemu(tmp_path, 'echo "Probing EDD (edd=off to disable)... ok"; exec sleep 30')
    assert accel._trial("/dev/null", hang, None)[1] is False  # noqa: SLF001
    abort = tmp_path / "abort"
    abort.mkdir()
    assert accel._trial("/dev/null", _fake_qemu(abort, "echo 'error: failed to set MSR' >&2; exit 1"),  # noqa: SLF001
                        None)[1] is False


def test_a_pvm_kvm_device_means_tcg_without_a_trial(monkeypatch):
    from nsbox.vm import accel

    real = Path("/sys/module/kvm_pvm")
    if not real.exists() or not Path("/dev/kvm").exists():
        pytest.skip("this machine's /dev/kvm is not a PVM device")
    monkeypatch.setattr(accel, "_trial", lambda *a: pytest.fail("tried KVM on a PVM device"))
    got = accel.detect("/dev/null", "qemu", None)
    assert (got.kvm, got.name) == (False, "TCG") and "PVM" in got.why
