"""Firewall kinds and link kinds are found by discovery, and the layers loop over them.

A firewall kind is one module of nsbox/kinds/firewalls/ (iptables, ip6tables, nft); the
plan's text, `nsbox explain`, the kernel's apply and validation, the counters and the
artifacts' dumps all loop over `kinds()`. The test here adds a kind the way a
contributor would, as one new module in a directory on the package's path, and checks
that every one of those loops then includes it, with no other file touched.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from nsbox.kinds import firewalls
from nsbox.kinds import links as link_kinds


def test_the_three_firewall_kinds_are_discovered_in_apply_order():
    assert [k.name for k in firewalls.kinds()] == ["iptables", "ip6tables", "nft"]


def test_every_link_kind_module_is_registered_without_a_list():
    here = os.path.dirname(link_kinds.__file__)
    modules = sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))
    assert sorted(link_kinds.KINDS) == modules


def test_features_come_from_the_registries_and_each_has_a_probe():
    from nsbox.host import features
    from nsbox.model.lab import FEATURES

    assert set(link_kinds.KINDS) <= set(FEATURES)
    assert {k.feature for k in firewalls.kinds()} <= set(FEATURES)
    assert set(features.PROBES) == set(FEATURES)


@pytest.fixture
def new_kind(tmp_path, monkeypatch):
    """A module `zzfw` in a directory added to the package's path: a kind nsbox never knew."""
    (tmp_path / "zzfw.py").write_text(textwrap.dedent('''
        from nsbox.kinds.firewalls import FirewallKind, register

        KIND = register(FirewallKind(
            name="zzfw", order=40, feature="nftables",
            inputs=lambda fw: ["zz rules\\n"] if fw.nft else [],
            commands=lambda fw: [("zzfw-load", "zz rules\\n")] if fw.nft else [],
            load_argv=lambda flavour, check: ["zzfw-load", *(["--check"] if check else [])],
            refused=lambda stderr, text, i: "zz refuses",
            save_argv=lambda flavour: ["zzfw-save"],
            dumps=(("zzfw.txt", ("zzfw-save",), "zzfw", True),),
        ))
    '''))
    monkeypatch.setattr(firewalls, "__path__", [*firewalls.__path__, str(tmp_path)])
    firewalls._discover()
    yield firewalls.get("zzfw")
    firewalls._KINDS.pop("zzfw", None)
    sys.modules.pop("nsbox.kinds.firewalls.zzfw", None)
    import importlib

    from nsbox.artifacts import dumps
    importlib.reload(dumps)  # its DUMPS without zzfw again, for the tests after this one


def test_a_new_kind_is_one_module_and_every_layer_loops_over_it(new_kind, monkeypatch):
    import importlib
    import subprocess

    from nsbox.kernel import firewall as kernel_firewall
    from nsbox.model import Lab
    from nsbox.plan import plan_lab
    from nsbox.plan.explain import script

    assert [k.name for k in firewalls.kinds()][-1] == "zzfw"
    lab = Lab("zz")
    lab.require("nftables")
    node = lab.node("a")
    node.firewall.nft.append("table inet t {\n}\n")
    # plan and explain: its command, in the node
    steps = plan_lab(lab).steps
    assert any("zzfw-load <<'EOF'\nzz rules\nEOF" in s.text for s in steps)
    assert "ip netns exec a zzfw-load <<'EOF'" in script(lab)
    # artifacts: its dump
    from nsbox.artifacts import dumps
    dumps = importlib.reload(dumps)
    assert "zzfw.txt" in [d.file for d in dumps.DUMPS]
    # apply: its program run with its input (the real nft left out: only the call is recorded)
    ran = []
    monkeypatch.setattr(kernel_firewall.tools, "find", lambda name: f"/x/{name}")
    monkeypatch.setattr(kernel_firewall.subprocess, "run",
                        lambda argv, input, **k: ran.append((argv, input)) or subprocess.CompletedProcess(argv, 0, "", ""))
    kernel_firewall.apply("a", node.firewall, "nft")
    assert (["/x/zzfw-load"], "zz rules\n") in ran
