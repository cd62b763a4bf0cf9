"""The dockerfw renderers' text goes into a real kernel and comes back out unchanged.

Each case renders a Docker 29 firewall-matrix scenario (the same scenarios as
tests/unit/test_unit_dockerfw.py, rebuilt from the golden file's name), applies it in a
throwaway `unshare --net` namespace with `{ip,ip6}tables-<flavour>-restore` (the flavour
the system's `iptables` is) or `nft -f`, reads it back with `{ip,ip6}tables-<flavour>-save
-t raw/filter/nat` or `nft list table ip|ip6 docker-bridges`, and compares the readback
with Docker's golden file: the kernel accepted every line, and the tools print back
exactly what Docker's own test recorded.

Normalisation, only what is stated: `#` comment lines from *-save are dropped (the
goldens README: "comments stripped"); for nft, the nat output hook's priority is loaded
and listed as -100 by nft < 1.0.7 and compared as `dstnat` (moby's nftabler_test.go does
the same replacement). The namespace dies with its `unshare` process: nothing is left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsbox.host.programs import program, resolve_flavour
from nsbox.kits.dockerfw import iptables as ipt
from nsbox.kits.dockerfw import nftables as nft
from tests.support.scratch import in_netns, strip_comments
from tests.unit.test_unit_dockerfw import GOLDENS, IPT_FILES, NFT_FILES, scenario, split_name

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a network namespace"),
              pytest.mark.tools("unshare", "nft", "iptables")]

# The brief's sample: the cleaned skeleton, nat with the proxy on, proxy off, routed,
# nat-unprotected, SNAT, internal, a port bound on loopback.
SAMPLE_STEMS = [
    "cleaned,hairpin=false",
    "cleaned,hairpin=true",
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false",
    "hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false",
    "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=routed,bindlh=false",
    "hairpin=true,internal=false,icc=false,masq=true,snat=true,gwm=nat-unprotected,bindlh=true",
    "hairpin=false,internal=true,icc=false",
    "hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true",
]
IPT_KINDS = {"iptables": 4, "ip6tables": 6}
NFT_KINDS = {"ip": 4, "ip6": 6}
MARK = "=====dockerfw-next====="


@pytest.fixture(scope="module")
def flavour() -> str:
    return resolve_flavour("auto")


def _ipt_script(family: int, flavour: str, restore_file: Path) -> str:
    restore, save = program(family, flavour, "restore"), program(family, flavour, "save")
    saves = "; ".join(f"{save} -t {t}" for t in ipt.TABLES)
    return f"{restore} < '{restore_file}'; {saves}"


def _nft_script(family: int, nft_file: Path) -> str:
    name = "ip" if family == 4 else "ip6"
    # An empty render (family disabled) loads nothing and lists nothing.
    if nft_file.stat().st_size == 0:
        return "nft list ruleset"
    return f"nft -f '{nft_file}'; nft list table {name} {nft.TABLE}"


def _render_ipt(path: Path, tmp: Path) -> tuple[int, Path]:
    stem, kind = split_name(path)
    family = IPT_KINDS[kind]
    daemon, networks = scenario(stem)
    out = tmp / (path.name + ".restore")
    out.write_text(ipt.save_text(ipt.render(daemon, networks, family)))  # type: ignore[arg-type]
    return family, out


def _render_nft(path: Path, tmp: Path) -> tuple[int, Path]:
    stem, kind = split_name(path)
    family = NFT_KINDS[kind]
    daemon, networks = scenario(stem)
    out = tmp / (path.name + ".nft")
    out.write_text(nft.loadable(nft.render(daemon, networks, family)))  # type: ignore[arg-type]
    return family, out


@pytest.mark.parametrize("kind", list(IPT_KINDS))
@pytest.mark.parametrize("stem", SAMPLE_STEMS)
def test_iptables_sample_round_trips(stem: str, kind: str, flavour: str, tmp_path: Path) -> None:
    golden = GOLDENS / "iptables" / f"{stem}__{kind}.golden"
    family, restore_file = _render_ipt(golden, tmp_path)
    back = strip_comments(in_netns(_ipt_script(family, flavour, restore_file)))
    assert back.splitlines() == golden.read_text().splitlines(), f"{kind}-{flavour}"


@pytest.mark.parametrize("kind", list(NFT_KINDS))
@pytest.mark.parametrize("stem", SAMPLE_STEMS)
def test_nftables_sample_round_trips(stem: str, kind: str, tmp_path: Path) -> None:
    golden = GOLDENS / "nftables" / f"{stem}__{kind}.golden"
    family, nft_file = _render_nft(golden, tmp_path)
    back = nft.listed(in_netns(_nft_script(family, nft_file)))
    assert back.splitlines() == golden.read_text().splitlines()


def test_whole_iptables_matrix_round_trips(flavour: str, tmp_path: Path) -> None:
    """Every iptables golden, one after the other in ONE namespace (a restore replaces the
    three tables it names entirely: flushed, user chains deleted, policies set)."""
    scripts = []
    for path in IPT_FILES:
        family, restore_file = _render_ipt(path, tmp_path)
        scripts.append(f"{_ipt_script(family, flavour, restore_file)}; echo '{MARK}'")
    outputs = in_netns("\n".join(scripts), timeout=600).split(MARK + "\n")[:-1]
    assert len(outputs) == len(IPT_FILES)
    bad = [p.name for p, out in zip(IPT_FILES, outputs)
           if strip_comments(out).splitlines() != p.read_text().splitlines()]
    assert not bad, f"{len(bad)} of {len(IPT_FILES)} read back differently: {bad[:5]}"


def test_whole_nftables_matrix_round_trips(tmp_path: Path) -> None:
    """Every nftables golden in ONE namespace, `flush ruleset` between them."""
    scripts = []
    for path in NFT_FILES:
        family, nft_file = _render_nft(path, tmp_path)
        scripts.append(f"nft flush ruleset; {_nft_script(family, nft_file)}; echo '{MARK}'")
    outputs = in_netns("\n".join(scripts), timeout=600).split(MARK + "\n")[:-1]
    assert len(outputs) == len(NFT_FILES)
    bad = [p.name for p, out in zip(NFT_FILES, outputs)
           if nft.listed(out).splitlines() != p.read_text().splitlines()]
    assert not bad, f"{len(bad)} of {len(NFT_FILES)} read back differently: {bad[:5]}"


def test_a_wrong_rule_is_seen(flavour: str, tmp_path: Path) -> None:
    """Negative control: the readback comparison does fail on a different rule (the
    published container port 81 instead of 80)."""
    golden = GOLDENS / "iptables" / f"{SAMPLE_STEMS[2]}__iptables.golden"
    family, restore_file = _render_ipt(golden, tmp_path)
    text = restore_file.read_text()
    assert "--dport 80 -j ACCEPT" in text
    restore_file.write_text(text.replace("--dport 80 -j ACCEPT", "--dport 81 -j ACCEPT"))
    back = strip_comments(in_netns(_ipt_script(family, flavour, restore_file)))
    diff = set(back.splitlines()) ^ set(golden.read_text().splitlines())
    assert diff == {
        "-A DOCKER -d 192.168.0.2/32 ! -i br-dummy -o br-dummy -p tcp -m tcp --dport 80 -j ACCEPT",
        "-A DOCKER -d 192.168.0.2/32 ! -i br-dummy -o br-dummy -p tcp -m tcp --dport 81 -j ACCEPT",
    }


@pytest.mark.parametrize("name", ["bridge-mode", "publish-proxy-on", "publish-proxy-off", "user-network"])
def test_layout_2010_round_trips_to_the_real_dump(name: str, flavour: str, tmp_path: Path) -> None:
    """The 20.10 layout, applied and read back by iptables-<flavour>-save, is still the
    real dockerd 20.10's dump (tests/data/realdocker, same normaliser)."""
    from tests.support.realdocker.normalize import normalize
    from tests.unit.test_unit_dockerfw import REALDOCKER, SCENARIOS_2010

    daemon, networks = SCENARIOS_2010[name]
    tables = ipt.forward_drop(ipt.render(daemon, networks, 4, layout="20.10"))
    restore_file = tmp_path / "rules"
    restore_file.write_text(ipt.save_text(tables))
    restore, save = program(4, flavour, "restore"), program(4, flavour, "save")
    back = in_netns(f"{restore} < '{restore_file}'; {save} -t filter; {save} -t nat")
    assert normalize(back).splitlines() == (REALDOCKER / f"{name}.host.rules").read_text().splitlines()


def test_embedded_dns_rules_round_trip(flavour: str, tmp_path: Path) -> None:
    """The resolver's rules, both backends, are accepted and listed back as rendered. (No
    Docker golden exists for the nft ones: this shows the kernel's spelling only.)"""
    from nsbox.kits.dockerfw import resolver

    rules = tmp_path / "dns.rules"
    rules.write_text(ipt.save_text(resolver.iptables_rules(udp_port=43210, tcp_port=40000)))
    restore, save = program(4, flavour, "restore"), program(4, flavour, "save")
    back = strip_comments(in_netns(f"{restore} < '{rules}'; {save} -t nat"))
    assert back == rules.read_text()

    want = resolver.nftables_rules(udp_port=43210, tcp_port=40000)
    nft_file = tmp_path / "dns.nft"
    nft_file.write_text(nft.loadable(want))
    back = nft.listed(in_netns(f"nft -f '{nft_file}'; nft list table ip {resolver.NFT_TABLE}"))
    assert back == want
