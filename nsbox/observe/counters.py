"""Rule counters read back from the kernel: `{ip,ip6}tables-<flavour>-save -c` and
`nft list ruleset` inside a node's netns, matched to the model's rules."""

from __future__ import annotations

import os
import subprocess

from nsbox import tools
from nsbox.errors import InstallError, KernelError
from nsbox.host import netns
from nsbox.host.programs import tool_env
from nsbox.kinds import firewalls
from nsbox.model.firewall import Firewall
from nsbox.kinds.firewalls.nft import first_error
from nsbox.kinds.firewalls.xtables import FAMILIES
from nsbox.wire.iptables import saved_counters
from nsbox.wire.nftables import listed_rules


def drop_counters(path: str, firewall: Firewall, flavour: str = "legacy",
                  family: int = 4) -> dict[tuple[str, str, str], int]:
    """Packet counters of every DROP/REJECT rule and DROP policy of FIREWALL's FAMILY
    tables (4: iptables, 6: ip6tables), read in the netns at PATH with
    `{ip,ip6}tables-<flavour>-save -c`: (table, chain, rule spec as rendered, or
    "policy") -> packets. An IPv6 packet only ever moves ip6tables counters, so a
    probe's family says which tables to read."""
    return rule_counters(path, firewall, flavour, family, only_drops=True)


def rule_counters(path: str, firewall: Firewall, flavour: str = "legacy", family: int = 4,
                  only_drops: bool = False) -> dict[tuple[str, str, str], int]:
    """Packet counters of FIREWALL's FAMILY rules as drop_counters() reads them: every
    rule whatever its target (ACCEPT, DNAT, MASQUERADE, MARK, a jump) and every builtin
    chain's policy; ONLY_DROPS: DROP/REJECT rules and DROP policies alone.

    A kernel rule is matched to the model's by its text (both rendered by
    nsbox/model/rules.py), the k-th copy of a text to the k-th."""
    prog, argv = _save(FAMILIES[family], flavour)
    with netns.entered(path):
        done = subprocess.run([prog, *argv[1:]], capture_output=True, text=True, check=False, env=tool_env())
    if done.returncode != 0:
        raise KernelError(f"{os.path.basename(prog)} -c: {' '.join(done.stderr.split()) or done.returncode}")
    saved = saved_counters(done.stdout, only_drops=only_drops)
    out: dict[tuple[str, str, str], int] = {}
    for model in firewall.used_tables(family):
        for chain in model.chains.values():
            kernel = saved.get((model.name, chain.name), [])
            seen: dict[str, int] = {}
            for r in chain.rules:
                spec = r.render()
                k = seen[spec] = seen.get(spec, 0) + 1
                if only_drops and r.jumps_to not in ("DROP", "REJECT"):
                    continue
                same = [n for s, n in kernel if s == spec]
                if k <= len(same):  # copies share a key: the first one sees the packets first
                    out.setdefault((model.name, chain.name, spec), same[k - 1])
            if chain.policy == "DROP" or (not only_drops and chain.builtin):
                pol = [n for s, n in kernel if s == "policy"]
                if pol:
                    out[(model.name, chain.name, "policy")] = pol[0]
    return out


def nft_rule_counters(path: str) -> list[tuple[str, str, int | None]]:
    """listed_rules() of the netns at PATH, read with `nft list ruleset` inside it."""
    prog, argv = _save("nft", "")
    with netns.entered(path):
        done = subprocess.run([prog, *argv[1:]], capture_output=True, text=True, check=False, env=tool_env())
    if done.returncode != 0:
        raise KernelError(f"nft list ruleset: {first_error(done.stderr) or done.returncode}")
    return listed_rules(done.stdout)


def _save(kind_name: str, flavour: str) -> tuple[str, list[str]]:
    """The program (absolute path) and argv that print KIND's rules with counters."""
    kind = firewalls.get(kind_name)
    argv = kind.save_argv(flavour)
    prog = tools.find(argv[0])
    if prog is None:
        raise InstallError(f"{argv[0]} is not installed ({kind.install_hint})")
    return prog, argv
