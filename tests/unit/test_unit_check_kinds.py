"""Validation and hand-over of counted_by, deny kinds, several seen_from addresses and ICMP
conntrack checks (the kernel side: tests/kernel/test_kernel_check_kinds.py), and the ICMP codes a
denial's kind is read from."""

from __future__ import annotations

import importlib.util

import pytest

from nsbox.errors import ValidationError
from nsbox.model import Lab
from nsbox.model.serialize import lab_from_dict, lab_to_dict
from nsbox.validate import validate
from nsbox.verify.probes import icmp_kind
from tests.support.paths import DATA

RECIPE = DATA / "check_kinds" / "check_kinds.py"


def _lab() -> Lab:
    spec = importlib.util.spec_from_file_location("check_kinds_recipe", RECIPE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lab = Lab("t")
    mod.build(lab, 0)
    return lab


def test_the_recipe_validates_and_survives_the_hand_over():
    lab = _lab()
    validate(lab)
    again = lab_from_dict(lab_to_dict(lab))
    assert again.checks == lab.checks
    udp = next(c for c in again.checks if c.name.startswith("udp/5"))
    assert udp.seen_froms == ("10.90.3.1", "10.90.2.1") and udp.counted_by[1] == "filter"
    assert udp.expected.startswith("allow, seen from 10.90.3.1|10.90.2.1, counted by host filter -A FORWARD")


@pytest.mark.parametrize("kwargs, message", [
    (dict(allow=False, deny="rejected"), "deny must be one of refused, timeout, unreachable, filtered"),
    (dict(deny="refused"), "needs allow=False"),
    (dict(seen_from=[]), "seen_from is an address or a non-empty list"),
    (dict(seen_from=["10.90.2.1", 7]), "seen_from is an address or a non-empty list"),
    (dict(counted_by=("host", "nat", "POSTROUTING", "-j MASQUERADE")), "has no rule '-A POSTROUTING -j MASQUERADE'"),
    (dict(counted_by=("host", "nat", "NOPE", "policy")), "counted_by names no chain NOPE"),
    (dict(counted_by=("host", "nat", "POSTROUTING")), "counted_by is (node, table, chain"),
    (dict(allow=False, dropped_by=("host", "filter", "FORWARD", "-p tcp --dport 13 -j DROP"),
          counted_by=("host", "filter", "FORWARD", "policy")), "dropped_by and counted_by together"),
])
def test_bad_checks_are_refused_in_one_line(kwargs, message):
    lab = _lab()
    lab.expect("a", "b", "tcp", 7, name="bad", **kwargs)
    with pytest.raises(ValidationError) as e:
        validate(lab)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_counted_by_takes_a_policy_and_any_target():
    lab = _lab()
    lab.expect("a", "b", "tcp", 7, name="policy", counted_by=("host", "nat", "POSTROUTING", "policy"))
    lab.expect("a", "b", "tcp", 7, name="deny", allow=False, deny="timeout",
               counted_by=("host", "filter", "FORWARD", "-p tcp --dport 13 -j DROP"))
    validate(lab)


def test_icmp_conntrack_has_no_ports():
    lab = _lab()
    ping = next(c for c in lab.checks if c.name == "icmp a->b")
    lab.expect_conntrack("host", ping, reply_dst="10.90.2.1", reply_sport=7, name="bad")
    with pytest.raises(ValidationError, match="an ICMP entry has no ports"):
        validate(lab)


@pytest.mark.parametrize("v6, typ, code, kind", [
    (False, 3, 3, "refused"), (False, 3, 1, "unreachable"), (False, 3, 0, "unreachable"),
    (False, 3, 13, "filtered"), (False, 3, 9, "filtered"), (False, 3, 10, "filtered"),
    (True, 1, 4, "refused"), (True, 1, 1, "filtered"), (True, 1, 3, "unreachable"), (True, 1, 0, "unreachable"),
    (False, 11, 0, None),
])
def test_icmp_codes_name_the_kind(v6, typ, code, kind):
    assert icmp_kind(v6, typ, code) == kind


@pytest.mark.parametrize("proto, port, kwargs", [
    ("tcp", 7, dict(size=1450)), ("tcp", 7, dict(df=True)), ("icmp", None, dict(size=27)),
    ("icmp", None, dict(size=70000)), ("icmp", None, dict(size="1450")), ("icmp", None, dict(df="yes")),
])
def test_size_and_df_are_for_icmp_checks_in_range(proto, port, kwargs):
    lab = _lab()
    lab.expect("a", "b", proto, port, name="bad", **kwargs)
    with pytest.raises(ValidationError, match="are for icmp checks"):
        validate(lab)


def test_a_df_probe_of_1450_bytes_validates():
    lab = _lab()
    lab.expect("a", "b", "icmp", size=1450, df=True, name="big")
    validate(lab)
