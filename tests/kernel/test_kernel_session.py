"""One recipe through three front ends, judged alike (nsbox/session.py).

`user-networks` (docker 29: two user networks, an internal one, the embedded DNS at
127.0.0.11, NAT to an `internet` node) has every kind of probe the front ends used
to disagree on: dns queries, loopback and declared virtual targets, allow and deny
with rule counters. It runs three ways:

1. `python -m nsbox run user-networks --format json` (the CLI, in its sandbox);
2. the pytest plugin's own path (build_lab + up: the lab in the host's named
   namespaces), each reach check sent as an ad-hoc probe with LabHandle.probe — the
   observer is the probe's own packets: a connection, an HTTP reply, a DNS answer;
3. the external verifier (verify_external) over the namespaces the plugin built,
   after the plugin's servers are stopped, as it judges the real dockerd's.

Each check must come out the same in all three (and pass: the recipe passes on this
kernel). The host guard (tests/conftest.py) checks nothing is left behind.
"""

from __future__ import annotations

import os
import time

import pytest

from nsbox.model import ReachCheck

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds labs")]

RECIPE = "user-networks"


def _plugin_verdict(handle, c: ReachCheck, deadline: float = 4.0) -> bool:
    """Whether the plugin's probe agrees with the check (retried while it settles, as
    assert_reachable does)."""
    start = time.monotonic()
    while True:
        p = handle._probe(c.src, c.dst, c.proto, c.port, 1.0, c.query)
        ok = p.body == (c.answer or "") if c.proto == "dns" else p.reachable == c.allow
        if ok or time.monotonic() - start >= deadline:
            return ok
        time.sleep(0.2)


def test_cli_plugin_and_external_verifier_judge_one_recipe_alike(nsbox) -> None:
    from nsbox.pytest_plugin import build_lab, up
    from nsbox.verify.external import verify_external

    run = nsbox.run("run", RECIPE, "--format", "json", timeout=240)
    assert run.returncode in (0, 1), run.describe()
    cli = {name: c["passed"] for name, c in run.checks().items()}

    lab = build_lab(RECIPE, {})
    assert all(isinstance(c, ReachCheck) for c in lab.checks), "the comparison covers reach checks only"
    handle = up(lab)
    try:
        plugin = {c.name: _plugin_verdict(handle, c) for c in lab.checks}
        handle.servers.close()  # the external verifier starts the lab's servers itself
        paths = {n: handle.built.path(n) for n in lab.nodes}
        paths |= {c.name: handle.built.path(c.node) for c in lab.containers.values()}
        external = {r.name: r.passed for r in verify_external(lab, paths, iptables=handle.built.iptables)}
    finally:
        problems = handle.down()
    assert problems == []

    names = [c.name for c in lab.checks]
    assert sorted(cli) == sorted(plugin) == sorted(external) == sorted(names)
    differ = {n: (cli[n], plugin[n], external[n]) for n in names if not cli[n] == plugin[n] == external[n]}
    assert differ == {}, f"(cli, plugin, external) differ: {differ}\n{run.describe()}"
    assert all(cli.values()), run.describe()
    assert any(c.proto == "dns" for c in lab.checks) and any(not c.allow for c in lab.checks)
