"""Probe protocols and report formats are kinds found by discovery (nsbox.kinds.discover):
every module of the package is registered, a module dropped into the package is found
with no other edit, and every list the orchestrators keep (server kinds, features, the
pytest plugin's probes, validation messages, the CLI's --format choices) is the
registry's. The observer for "what modules exist" is the package directory's listing."""

from __future__ import annotations

import os
import socket
import sys
import textwrap

import pytest

from nsbox.errors import ValidationError
from nsbox.kinds import discover, protocols
from nsbox.model import Lab
from nsbox.model.lab import ANSWERS, FEATURES, SERVER_KINDS, Server
from nsbox.report import formats
from nsbox.validate import validate


def _modules(package) -> set[str]:
    """The kind modules in PACKAGE's directory, as `ls` sees them."""
    return {f[:-3] for d in package.__path__ for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")}


def test_every_protocol_module_is_registered_under_its_name():
    assert _modules(protocols) == set(protocols.names())
    assert {"icmp", "tcp", "udp", "http", "dns", "sctp"} <= set(protocols.names())
    for name in protocols.names():
        assert sys.modules[f"nsbox.kinds.protocols.{name}"].PROTOCOL is protocols.get(name)


def test_every_format_module_is_registered_under_its_name():
    assert _modules(formats) == set(formats.names()) == {"text", "json", "junit", "ktap"}
    assert formats.names()[0] == "text"  # the default comes first


def test_link_kinds_are_discovered_too():
    from nsbox.kinds import links

    assert _modules(links) == set(links.KINDS)


def test_discover_imports_every_module_but_helpers(tmp_path, monkeypatch):
    pkg = tmp_path / "fakekinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("FOUND = []\n")
    for name in ("beta", "alpha", "_helper"):
        (pkg / f"{name}.py").write_text(f"from fakekinds import FOUND\nFOUND.append({name!r})\n")
    (pkg / "notes.txt").write_text("not a module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        mods = discover("fakekinds")
        assert [m.__name__ for m in mods] == ["fakekinds.alpha", "fakekinds.beta"]
        assert sys.modules["fakekinds"].FOUND == ["alpha", "beta"]
    finally:
        for m in [m for m in sys.modules if m == "fakekinds" or m.startswith("fakekinds.")]:
            del sys.modules[m]


GOPHER = '''
"""gopher: a test protocol dropped into the package (one module, nothing else edited)."""
import socket
from nsbox.kinds.protocols import Protocol, Serving, register, get

PROTOCOL = register(Protocol(name="gopher", transport="tcp", summary="a selector line, echoed",
                             probe=get("tcp").probe, answers=("gopher",),
                             serving=Serving(socket.SOCK_STREAM, on_data=get("tcp").serving.on_data)))
'''


@pytest.fixture
def gopher(tmp_path):
    """A protocol module in a directory added to the package's search path, then discovered."""
    (tmp_path / "gopher.py").write_text(textwrap.dedent(GOPHER))
    protocols.__path__.append(str(tmp_path))
    try:
        discover("nsbox.kinds.protocols")
        yield protocols.get("gopher")
    finally:
        protocols.__path__.remove(str(tmp_path))
        protocols.PROTOCOLS.pop("gopher", None)
        sys.modules.pop("nsbox.kinds.protocols.gopher", None)


def _two(lab_name: str = "p") -> Lab:
    lab = Lab(lab_name)
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "10.9.0.1/24")
    b.address("eth0", "10.9.0.2/24")
    return lab


def test_a_dropped_in_protocol_module_is_a_full_protocol(gopher):
    assert "gopher" in protocols.names() and "gopher" in protocols.server_kinds()
    lab = _two()
    lab.nodes["b"].serve("gopher", 70)
    lab.expect("a", "b", "gopher", 70)
    validate(lab)  # validation takes its server kind, its port and its transport from the module
    assert lab.nodes["b"].servers[0].l4 == "tcp"
    from nsbox.artifacts.capture import Filter

    assert Filter("10.9.0.2", "gopher", 70).bpf().startswith("(host 10.9.0.2 and tcp port 70)")
    # every front end (checks, the pytest plugin, the external verifier) asks probe_target,
    # whose list is the registry's
    from nsbox.validate import probe_target

    assert probe_target(lab, "a", "b", "gopher", 70).node is lab.nodes["b"]
    with pytest.raises(ValidationError, match="needs a port"):
        probe_target(lab, "a", "b", "gopher", None)


def test_validation_lists_are_the_registrys():
    lab = _two()
    lab.expect("a", "b", "gre", 80)
    with pytest.raises(ValidationError, match=r"check .*: unknown protocol .gre. \(" + ", ".join(protocols.names())):
        validate(lab)
    lab = _two()
    lab.nodes["b"].servers.append(Server("gre", 1))
    with pytest.raises(ValidationError, match="unknown server kind 'gre' .*" + ", ".join(protocols.server_kinds())):
        validate(lab)


def test_model_lists_are_derived_from_the_registry():
    assert SERVER_KINDS == protocols.server_kinds()
    assert set(ANSWERS) == set(protocols.names())
    assert set(protocols.features()) <= set(FEATURES) and "sctp" in FEATURES
    from nsbox.host import features

    assert set(features.PROBES) == set(FEATURES)


def test_probes_every_front_end_accepts_are_the_registrys():
    from nsbox.validate import probe_target

    plain = protocols.where(lambda p: p.plain)
    assert "dns" not in plain and {"icmp", "tcp", "udp", "http", "sctp"} <= set(plain)
    lab = _two()
    with pytest.raises(ValidationError, match="unknown protocol 'gre' \\(" + ", ".join(protocols.names())):
        probe_target(lab, "a", "b", "gre", 80)
    with pytest.raises(ValidationError, match="asks for a name"):
        probe_target(lab, "a", "b", "dns", 53)  # a dns probe without its query


def test_cli_format_choices_are_the_registrys():
    from nsbox import cli
    from nsbox.report import output

    for command in ("run", "verify"):
        fmt = next(p for p in cli.main.commands[command].params if p.name == "fmt")
        assert tuple(fmt.type.choices) == formats.names()
    assert output.FORMATS == formats.names()


def test_a_dropped_in_format_module_renders(tmp_path):
    (tmp_path / "csv.py").write_text(textwrap.dedent('''
        from nsbox.report.formats import Format, register
        FORMAT = register(Format("csv", "one line per check", lambda results: "".join(
            f"{r.recipe},{c.name},{c.passed}\\n" for r in results for c in r.checks)))
    '''))
    formats.__path__.append(str(tmp_path))
    try:
        discover("nsbox.report.formats")
        from nsbox.report import output
        from nsbox.verify.results import CheckResult, RecipeResult

        r = RecipeResult("demo", "pass")
        r.checks.append(CheckResult("tcp/7 a->b", "reach", "allow", "allow", True, ""))
        assert output.render([r], "csv") == "demo,tcp/7 a->b,True\n"
        from nsbox.report import kernels as matrix

        with pytest.raises(Exception, match="no report of several kernels"):
            matrix.render([], "csv")
    finally:
        formats.__path__.remove(str(tmp_path))
        formats.FORMATS.pop("csv", None)
        sys.modules.pop("nsbox.report.formats.csv", None)


@pytest.mark.parametrize("name", sorted(protocols.PROTOCOLS))
def test_each_protocol_is_consistent(name):
    p = protocols.get(name)
    assert p.transport in (None, *protocols.TRANSPORTS)
    assert p.ip_proto == {None: None, "tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}[p.transport]
    assert all(k in protocols.server_kinds() for k in p.answers)
    if p.serving is not None:
        assert name in p.answers  # its own server answers its probe
        assert (p.serving.on_data is not None) == p.serving.stream != (p.serving.on_datagram is not None)
        want = {"tcp": socket.SOCK_STREAM, "sctp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}[p.transport]
        assert p.serving.sock_type == want
    assert p.summary and p.probe is not None


def test_sctp_needs_its_feature():
    lab = _two()
    lab.nodes["b"].serve("sctp", 9)
    with pytest.raises(ValidationError, match=r'serves sctp; declare it with lab.require\("sctp"\)'):
        validate(lab)
    lab = _two()
    lab.nodes["b"].serve("sctp", 9)
    lab.expect("a", "b", "sctp", 9)  # a check of it declares it
    assert "sctp" in lab.requires
    validate(lab)
    assert lab.target("a", "b", "sctp", 9).ip == "10.9.0.2"
    lab.virtual("10.9.0.77")
    lab.expect("a", "10.9.0.77", "sctp", 9, name="service")
    validate(lab)


def test_options_belong_to_their_protocol():
    lab = _two()
    lab.nodes["b"].serve("sctp", 9)
    lab.expect("a", "b", "sctp", 9, size=100)
    with pytest.raises(ValidationError, match=r"size= and df= are for icmp checks, not sctp"):
        validate(lab)
    lab = _two()
    lab.nodes["b"].serve("dns", 53)
    lab.expect_dns("a", "10.9.0.2", "x", None)
    validate(lab)
    lab.expect("a", "b", "dns", 53, name="no query")
    with pytest.raises(ValidationError, match="a dns check asks for a name"):
        validate(lab)


def test_dns_reads_as_its_answer():
    from nsbox.verify.probes import ProbeResult

    lab = _two()
    c = lab.expect_dns("a", "10.9.0.2", "web", "10.9.0.5")
    assert c.expected == "answer 10.9.0.5"
    dns = protocols.get("dns")
    assert dns.judge(c, ProbeResult(True, "A 10.9.0.5 from x", "t", ("10.9.0.1", 4000), "10.9.0.5")) == \
        ("answer 10.9.0.5", True)
    assert dns.judge(c, ProbeResult(True, "NXDOMAIN from x", "t", ("10.9.0.1", 4000), "")) == ("NXDOMAIN", False)
    assert dns.token_of(ProbeResult(True, "", "t", ("10.9.0.1", 4000))) == "dns:10.9.0.1:4000"
