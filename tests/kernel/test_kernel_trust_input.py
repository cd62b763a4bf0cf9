"""Trust, round two (issue 12), input side, against the real kernel and real iptables.

- item 21: rules in the forms iptables accepts without `-m PROTO` are loaded by real
  iptables-restore in a throwaway netns and read back with iptables-save: the model
  stores exactly what iptables-save prints;
- item 8: --then's `sh`, and what it runs, never come from a directory of the caller's PATH;
- item 19: one refused recipe among several is that recipe's error in the report, and
  the others run;
- item 22: a probe answered by its own source fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nsbox.kinds.firewalls import xtables as iptables
from nsbox.model.rules import parse_rule
from tests.support.paths import REPO

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces"),
    pytest.mark.tools("unshare", "nsenter", "setpriv"),
]



def nsbox(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=180)


IMPLICIT = [
    ("filter", "INPUT", "-p tcp --dport 8080 -j ACCEPT", 4),
    ("filter", "INPUT", "-p udp ! --dport 53 -j DROP", 4),
    ("filter", "INPUT", "-s 10.0.0.0/8 -p icmp --icmp-type 8 -j ACCEPT", 4),
    ("filter", "INPUT", "-p tcp --sport 1:1024 --dport 22 -j ACCEPT", 4),
    ("filter", "INPUT", "-m comment --comment web -p tcp --dport 80 -j ACCEPT", 4),
    ("nat", "PREROUTING", "-d 10.0.0.1/32 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080", 4),
    ("filter", "INPUT", "-p ipv6-icmp --icmpv6-type 128 -j ACCEPT", 6),
]


@pytest.mark.parametrize("flavour", ["nft", "legacy"])
@pytest.mark.parametrize("table, chain, spec, family", IMPLICIT)
def test_implicit_protocol_matches_are_stored_as_iptables_save_prints_them(table, chain, spec, family, flavour):
    """Item 21: the parser accepted only `-p tcp -m tcp --dport`; iptables accepts the short
    form. Load the recipe's text with the real restore in a throwaway netns, read it back
    with the real save: the model's render() is that line."""
    name = iptables.FAMILIES[family]
    restore, save = f"/usr/sbin/{name}-{flavour}-restore", f"/usr/sbin/{name}-{flavour}-save"
    if not (os.path.exists(restore) and os.path.exists(save)):
        pytest.skip(f"{name}-{flavour} is not installed")
    text = f"*{table}\n-A {chain} {spec}\nCOMMIT\n"
    done = subprocess.run(["unshare", "--net", "sh", "-c", f'"$1" < "$3" && "$2" -t {table}', "sh",
                           restore, save, "/dev/stdin"], input=text, capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and ("Could not fetch rule set" in done.stderr or "can't initialize" in done.stderr):
        pytest.skip(f"{flavour}: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    saved = [ln[len(f"-A {chain} "):] for ln in done.stdout.splitlines() if ln.startswith(f"-A {chain} ")]
    assert saved == [parse_rule(spec).render()]


TINY = '''
from nsbox.recipe import recipe

@recipe({name!r})
def build(lab):
    lab.host.bridge("br0", "10.0.0.1/24")
    a = lab.node("a")
    lab.veth(a, "eth0", lab.host, "veth-a", b_master="br0")
    a.address("eth0", "10.0.0.2/24")
    lab.expect("host", "a", "icmp")
{extra}
'''


def recipes_dir(tmp_path: Path, **recipes: str) -> Path:
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    for name, extra in recipes.items():
        (d / f"{name.replace('-', '_')}.py").write_text(TINY.format(name=name, extra=textwrap.indent(extra, "    ")))
    return d


@pytest.mark.parametrize("mode", [[], ["--on-host"]])
def test_then_finds_nothing_on_the_callers_path(tmp_path, mode):
    """Item 8: a user-owned `sh` (or `ip`) early on root's PATH ran as uid 0 on-host."""
    d = recipes_dir(tmp_path, tiny="")
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "marker"
    for prog in ("sh", "ip", "true"):
        (fake / prog).write_text(f"#!/bin/sh\necho ran > {marker}\n")
        os.chmod(fake / prog, 0o755)
    os.chown(fake, 65534, 65534)
    seen = tmp_path / "path.txt"
    p = nsbox("run", "tiny", "--recipes", str(d), *mode, "--then", f"true; echo \"$PATH\" > {seen}",
              env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "a program from the caller's PATH ran as root"
    assert str(fake) not in seen.read_text()


def test_one_refused_recipe_among_several_is_reported_and_the_others_run(tmp_path):
    """Item 19: a recipe refused by validation aborted the whole run."""
    d = recipes_dir(tmp_path, good="", bad="lab.expect('host', 'a', 'tcp', port=99)  # no server there")
    out = tmp_path / "report.json"
    p = nsbox("run", "good", "bad", "--recipes", str(d), "--format", "json", "--output", str(out))
    assert p.returncode == 2, p.stderr
    results = {r["recipe"]: r for r in json.loads(out.read_text())["results"]}
    assert results["good"]["status"] == "pass" and results["good"]["checks"]
    assert results["bad"]["status"] == "fail" and "no http/tcp server" in results["bad"]["error"]
    assert p.stderr.startswith("nsbox: error: bad: ")


def test_a_probe_answered_by_its_own_source_fails(tmp_path):
    """Item 22: b also holds a's address (declared shared, so validation lets it through):
    b's ping to a is answered by b's own stack. The verifier must see that and fail it;
    the same lab without b's copy passes (the check is not failing for another reason)."""
    both = ("b = lab.node('b')\n"
            "lab.veth(b, 'eth0', lab.host, 'veth-b', b_master='br0')\n"
            "b.address('eth0', '10.0.0.3/24')\n"
            "b.address('eth0', '10.0.0.2/24', shared=True)\n"
            "a.addresses = [dataclasses.replace(x, shared=True) for x in a.addresses]\n"
            "lab.expect('b', 'a', 'icmp', name='b->a')\n")
    plain = ("b = lab.node('b')\n"
             "lab.veth(b, 'eth0', lab.host, 'veth-b', b_master='br0')\n"
             "b.address('eth0', '10.0.0.3/24')\n"
             "lab.expect('b', 'a', 'icmp', name='b->a')\n")
    d = recipes_dir(tmp_path, selfish=both, honest=plain)
    src = (d / "selfish.py").read_text()
    (d / "selfish.py").write_text("import dataclasses\n" + src)
    p = nsbox("run", "selfish", "--recipes", str(d), "--format", "json", "--settle", "0")
    assert p.returncode == 1, p.stderr
    check = {c["name"]: c for c in json.loads(p.stdout)["results"][0]["checks"]}["b->a"]
    assert check["observed"] == "answered by the source itself" and not check["passed"]
    p = nsbox("run", "honest", "--recipes", str(d), "--format", "json")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("mode", [[], ["--on-host"]])
def test_running_one_recipe_runs_no_other_file_of_its_dir(tmp_path, mode):
    """Item 4: `--recipes DIR` used to execute every *.py in DIR, as root, whatever was asked for."""
    d = recipes_dir(tmp_path, tiny="")
    marker = tmp_path / "marker"
    (d / "planted.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    p = nsbox("run", "tiny", "--recipes", str(d), *mode)
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "a recipe file nobody asked for ran"


def test_a_pattern_on_host_runs_every_recipe_it_matches(tmp_path):
    """Item 19: --on-host counted the patterns, not the recipes they expand to ('did not
    return one lab per recipe')."""
    d = recipes_dir(tmp_path, **{"tiny-a": "", "tiny-b": ""})
    p = nsbox("run", "tiny-*", "--recipes", str(d), "--on-host", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert [r["recipe"] for r in json.loads(p.stdout)["results"]] == ["tiny-a", "tiny-b"]


@pytest.mark.parametrize("fmt, words", [("text", "bad"), ("junit", "no http/tcp server"),
                                        ("ktap", "no http/tcp server")])
def test_a_refused_recipe_is_in_every_format(tmp_path, fmt, words):
    d = recipes_dir(tmp_path, good="", bad="lab.expect('host', 'a', 'tcp', port=99)")
    p = nsbox("run", "good", "bad", "--recipes", str(d), "--format", fmt)
    assert p.returncode == 2, p.stderr
    assert words in p.stdout and "good" in p.stdout
