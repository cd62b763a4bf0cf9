"""One test over every shipped recipe (recipes/*.py): a new recipe is covered by adding its file.

For each: `nsbox validate` accepts it; `nsbox run` passes in the sandbox (or SKIPs with a
reason on a kernel without what it needs); the host is unchanged (the host guard, tests/support/host.py);
and the rules in each of its namespaces, read by the system's own `iptables-save` /
`ip6tables-save` from inside the live lab, equal the model's rendering table for table
(a table the model leaves empty has no rule in the kernel).
"""

from __future__ import annotations

import re

import pytest

from tests.support.kernel import IS_ROOT, NEEDS_ROOT
from tests.support.golden import parse_save
from tests.support.explain_harness import shipped_recipes

from nsbox.cli import load_labs
from nsbox.kinds.firewalls.xtables import restore_text

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("iptables-save", "ip6tables-save")]

# Print each namespace's rules between markers, from inside the live lab.
DUMP = ('for v in $(env | sed -n "s/^NSBOX_NETNS_\\([A-Z0-9_]*\\)=.*/\\1/p"); do '
        'eval ns=\\$NSBOX_NETNS_$v; echo "@@ $ns 4"; ip netns exec "$ns" iptables-save; '
        'echo "@@ $ns 6"; ip netns exec "$ns" ip6tables-save; done')


def _dumps(text: str) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    key = None
    for line in text.splitlines():
        m = re.fullmatch(r"@@ (\S+) ([46])", line)
        if m:
            key = (m.group(1), int(m.group(2)))
            out[key] = ""
        elif key is not None:
            out[key] += line + "\n"
    return out


def _rules_only(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """Tables holding a rule, a user chain or a policy other than ACCEPT; a table left
    empty (all builtin chains ACCEPT) may or may not exist in the kernel."""
    def used(lines: list[str]) -> bool:
        return any(not ln.startswith(":") or not ln.endswith(" ACCEPT") for ln in lines)
    return {t: lines for t, lines in tables.items() if used(lines)}


@pytest.mark.parametrize("recipe", shipped_recipes())
def test_every_shipped_recipe(nsbox, recipe):
    v = nsbox.run("validate", recipe)
    assert v.returncode == 0 and v.stdout.startswith(f"ok  {recipe}:"), v.describe()

    r = nsbox.run("run", recipe, "--format", "json", "--then", DUMP, timeout=300)
    if r.returncode == 4:
        assert r.result["status"] == "skip" and r.result["skip_reason"], r.describe()
        pytest.skip(f"{recipe}: {r.result['skip_reason']}")
    assert r.returncode == 0, r.describe()
    assert r.result["status"] == "pass" and r.result["checks"], r.describe()

    lab = load_labs((recipe,), {}, ())[0]
    names = r.result["namespaces"]
    dumps = _dumps(r.stderr)
    assert set(dumps) == {(ns, f) for ns in names.values() for f in (4, 6)}, sorted(dumps)
    compared = 0
    for node, ns in names.items():
        fw = lab.nodes[node].firewall
        for family in (4, 6):
            kernel = _rules_only(parse_save(dumps[(ns, family)]))
            model = _rules_only(parse_save(restore_text(fw, family)))
            assert kernel == model, (
                f"{recipe}: node {node}, IPv{family}: kernel rules differ from the model:\n"
                + "\n".join(f"  {t}: kernel only {sorted(set(kernel.get(t, [])) - set(model.get(t, [])))}, "
                             f"model only {sorted(set(model.get(t, [])) - set(kernel.get(t, [])))}"
                             for t in sorted(set(kernel) | set(model)) if kernel.get(t) != model.get(t)))
            compared += sum(len(lines) for lines in model.values())
    model_rules = sum(len(c.rules) for n in lab.nodes.values()
                      for t in [*n.firewall.tables.values(), *n.firewall.tables6.values()] for c in t.chains.values())
    assert compared >= model_rules  # every rule of the model was compared with the kernel's
