"""One lab session (nsbox/session.py) for every front end, and the model methods kits use.

1. The front ends — `nsbox run` (runner.py), the pytest plugin, the live holder, the
   external verifier, doctor and the recipe loader — reach the kernel only through
   nsbox.session: none of them imports realize, start_servers, the verifier's verify or
   the feature probe itself (read from their source, so a front end that grows its own
   path again fails here).
2. Which probes a lab accepts is one function, probe_target: validation, the plugin's
   ad-hoc probes and the external verifier accept the same protocols and targets and
   refuse the same ones with the same words. (Before, the plugin refused dns, container
   sources and virtual targets that a recipe's checks may use.) No kernel is touched:
   the plugin's probe function is replaced by a recorder, and the external verifier's
   targets here are ones it accepts without binding in a netns (loopback, virtual).
3. Lab.source and Lab.sets are dataclass fields, carried through the serialized form.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from nsbox import session
from nsbox.errors import UsageError, ValidationError
from nsbox.model import Lab, ReachCheck
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.pytest_plugin import LabHandle
from nsbox.validate import validate
from nsbox.verify import external
from nsbox.kinds.checks import reach as reach_kind

NSBOX = Path(session.__file__).resolve().parent
FRONT_ENDS = ("runner.py", "pytest_plugin.py", "verify/external.py", "live/holder.py")
# What only the session may call: building, serving, verifying, the feature probe.
SESSION_ONLY = {("nsbox.kernel.realize", "realize"), ("nsbox.verify.verifier", "start_servers"),
                ("nsbox.verify.verifier", "verify"), ("nsbox.kernel", "features")}


def _imports(path: Path) -> set[tuple[str, str]]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out |= {(node.module, a.name) for a in node.names}
    return out


# ------------------------------------------------------------------ 1. one path


@pytest.mark.parametrize("front", FRONT_ENDS)
def test_front_end_reaches_the_kernel_only_through_the_session(front: str) -> None:
    imports = _imports(NSBOX / front)
    assert not imports & SESSION_ONLY, f"{front} builds or verifies on its own: {sorted(imports & SESSION_ONLY)}"
    assert ("nsbox.session", "LabSession") in imports, f"{front} does not use nsbox.session.LabSession"


@pytest.mark.parametrize("front", ("doctor.py", "cli.py", "pytest_plugin.py"))
def test_loaders_validate_through_the_session(front: str) -> None:
    """doctor, the CLI's recipe loader and the plugin load and validate as a session's first step does."""
    assert ("nsbox.session", "load_and_validate") in _imports(NSBOX / front)


def test_session_tears_down_once_and_on_leaving_the_block() -> None:
    """The context manager's promise, with a stand-in for what realize returns (the
    teardown order is the session's; the kernel side is the kernel tests')."""
    calls = []

    class Built:
        def teardown(self) -> list[str]:
            calls.append("teardown")
            return ["a problem"]

    class Servers:
        def close(self) -> None:
            calls.append("servers")

    with pytest.raises(RuntimeError):
        with session.LabSession(Lab("t"), on_host=False) as s:
            s.built, s.servers = Built(), Servers()
            raise RuntimeError("a check crashed")
    assert calls == ["servers", "teardown"]
    assert s.teardown() == [] and calls == ["servers", "teardown"]  # once only


def test_external_session_never_tears_down_what_it_did_not_build() -> None:
    calls = []

    class Foreign:
        lab, iptables = Lab("t"), "nft"

        def teardown(self) -> list[str]:
            calls.append("teardown")
            return []

    with session.LabSession.external(Foreign()):
        pass
    assert calls == []


# ------------------------------------------------------------------ 2. one rule for probes


def _lab() -> Lab:
    lab = Lab("probes")
    lab.require("veth")
    b = lab.node("b")
    lab.veth(lab.host, "eth0", b, "eth0")
    lab.host.address("eth0", "192.0.2.1/24")
    b.address("eth0", "192.0.2.2/24")
    b.serve("tcp", 7).serve("http", 80).serve("udp", 9)
    b.serve_dns(53, {"a.test": "192.0.2.2"})
    lab.container("web", b)
    lab.virtual("192.0.2.80")  # a ClusterIP-like address only rules answer for
    return lab


# (src, dst, proto, port, query): every protocol, a container source, a virtual target
ACCEPTED = [("host", "b", "icmp", None, None), ("host", "b", "tcp", 7, None), ("host", "b", "http", 80, None),
            ("host", "b", "udp", 9, None), ("host", "192.0.2.2", "dns", 53, "a.test"),
            ("web", "host", "icmp", None, None), ("host", "192.0.2.80", "tcp", 8080, None)]
REFUSED = [("host", "b", "gre", 7, None), ("host", "b", "tcp", None, None), ("host", "b", "icmp", 7, None),
           ("host", "203.0.113.9", "tcp", 7, None), ("nobody", "b", "icmp", None, None),
           ("host", "b", "dns", 53, None)]


def test_the_protocol_list_is_the_sessions() -> None:
    from nsbox.kinds import protocols
    assert set(protocols.names()) >= {p for _, _, p, _, _ in ACCEPTED}


def _handle(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> tuple[LabHandle, list]:
    sent = []

    class Built:
        def path(self, node: str) -> str:
            return f"/run/netns/{node}"

    def probe(proto, src_path, ip, port, timeout, query=None):
        from nsbox.verify.probes import ProbeResult
        sent.append((proto, src_path, ip, port, query))
        return ProbeResult(True, "recorded", "t")

    monkeypatch.setattr("nsbox.verify.probes.probe", probe)
    return LabHandle(lab, Built(), None), sent


@pytest.mark.parametrize("src,dst,proto,port,query", ACCEPTED)
def test_validate_and_plugin_accept_the_same_probes(src, dst, proto, port, query,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _lab()
    target = session.probe_target(lab, src, dst, proto, port, query=query)
    lab.checks.append(ReachCheck(name="c", src=src, dst=dst, proto=proto, port=port, query=query,
                                 answer="192.0.2.2" if query else None))
    validate(lab)
    handle, sent = _handle(lab, monkeypatch)
    assert handle.probe(src, dst, proto, port, query=query)
    assert sent == [(proto, f"/run/netns/{lab.netns_of(src).name}", target.ip, port, query)]


@pytest.mark.parametrize("src,dst,proto,port,query", REFUSED)
def test_validate_plugin_and_external_refuse_the_same_probes(src, dst, proto, port, query,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _lab()
    with pytest.raises(ValidationError) as rule:
        session.probe_target(lab, src, dst, proto, port, query=query)
    why = str(rule.value)
    lab.checks.append(ReachCheck(name="c", src=src, dst=dst, proto=proto, port=port, query=query))
    with pytest.raises(ValidationError) as v:
        validate(lab)
    assert why in str(v.value)
    handle, sent = _handle(lab, monkeypatch)
    with pytest.raises(ValueError) as p:
        handle.probe(src, dst, proto, port, query=query)
    assert why in str(p.value) and sent == []
    with pytest.raises(UsageError) as e:
        reach_kind._check_target(external.ExternalLab(lab, {}), lab.checks[-1])
    assert why in str(e.value)


def test_external_verifier_accepts_loopback_and_virtual_targets_without_binding() -> None:
    lab = _lab()
    for dst, proto, port in (("127.0.0.1", "tcp", 7), ("192.0.2.80", "tcp", 8080)):
        reach_kind._check_target(external.ExternalLab(lab, {}), ReachCheck(name="c", src="b", dst=dst,
                                                                         proto=proto, port=port))


# ------------------------------------------------------------------ 3. fields, not patches


def test_source_and_sets_are_lab_fields_that_survive_serialization() -> None:
    names = {f.name for f in dataclasses.fields(Lab)}
    assert {"source", "sets"} <= names
    lab = Lab("t", source="/r/x.py", sets={"containers": "3"})
    back = lab_from_dict(lab_to_dict(lab))
    assert (back.source, back.sets) == ("/r/x.py", {"containers": "3"})
    assert (Lab("u").source, Lab("u").sets) == ("", {})


def test_no_front_end_patches_attributes_onto_lab() -> None:
    for path in (NSBOX / "cli.py", NSBOX / "model" / "serialize.py"):
        text = path.read_text()
        assert "type: ignore[attr-defined]" not in text, path
        assert 'getattr(lab, "source"' not in text and 'getattr(lab, "sets"' not in text, path
