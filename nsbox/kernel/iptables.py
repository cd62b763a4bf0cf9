"""Write a node's Firewall model where the distribution's `iptables` looks.

Two flavours share the iptables-save language the model is written in:

- nft (Debian 12, Ubuntu 24.04: `iptables` is xtables-nft-multi),
- legacy (xtables: `iptables` is xtables-legacy-multi).

Either way a node's tables of one family go to the kernel in ONE
`{ip,ip6}tables-<flavour>-restore` run started in the node's netns: one atomic
transaction, as dockerd and kube-proxy apply theirs, and plain `iptables -S` /
`iptables-save` in the lab show them. Rule counters are read back the same way
(`<flavour>-save -c`), so checks on counters pass under both.

python-iptables is no longer on the run path: kernel/features.py probes NAT in
the backend the rules go to, without it (its import ran ldconfig and gcc, ~0.4 s
a run). Only `nsbox doctor` still loads it, to report it (see _iptc).

The iptables programs read XTABLES_LIBDIR (and python-iptables IPTABLES_LIBDIR)
to find extension libraries and dlopen them from any directory: a variable left
in root's environment (sudo -E, a CI runner) would run its code as root. They
are removed from what these programs and python-iptables see (tool_env).

`auto` picks what `iptables` resolves to on this system.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Callable

from nsbox.errors import REINSTALL, InstallError, KernelError, ValidationError, missing_module
from nsbox.model.firewall import Firewall
from nsbox.model.rules import parse_rule


_loaded: list = []  # the iptc module once it has loaded (importing it is slow: it runs ldconfig)


def _iptc():
    """The python-iptables module, or InstallError: a libxtables that does not load
    is a broken installation, never a kernel without NAT."""
    if _loaded:
        return _loaded[0]
    for var in _LIBDIR_ENV:  # python-iptables dlopens from these directories: never a caller's
        os.environ.pop(var, None)
    try:
        import iptc  # loads libxtables; imported late so unit tests need no iptables
    except ImportError as e:
        raise (missing_module(e) or _libxtables_error(e)) from None
    except Exception as e:  # python-iptables raises whatever ctypes or its own checks raise
        raise _libxtables_error(e) from None
    _loaded.append(iptc)
    return iptc


def _libxtables_error(e: BaseException) -> InstallError:
    detail = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, TypeError) and "NoneType" in detail:
        # xtables.py compares the version of the library it found, and found none
        detail = "libxtables.so was not found"
    hints = [f"{v}={os.environ[v]}" for v in _IPTC_ENV if v in os.environ]
    if hints:
        detail += f"; note {', '.join(hints)} is set and steers where python-iptables looks"
    return InstallError(f"python-iptables cannot load libxtables ({detail}); install it with: "
                        f"apt install iptables (Debian/Ubuntu), {REINSTALL}")


# Environment variables python-iptables reads to find libxtables and its extensions.
_IPTC_ENV = ("PYTHON_IPTABLES_XTABLES_VERSION", "XTABLES_LIBDIR", "IPTABLES_LIBDIR")
# Those that name a directory libraries are loaded from (any directory, as root).
_LIBDIR_ENV = ("XTABLES_LIBDIR", "IPTABLES_LIBDIR")


def tool_env() -> dict[str, str]:
    """The environment for an iptables program: this one without the library directories."""
    return {k: v for k, v in os.environ.items() if k not in _LIBDIR_ENV}


FLAVOURS = ("auto", "nft", "legacy")
FAMILIES = {4: "iptables", 6: "ip6tables"}


def resolve_flavour(choice: str = "auto", find: Callable[[str], str | None] | None = None) -> str:
    """nft or legacy: CHOICE, or for auto what the system's `iptables` is.

    Debian's alternatives make /usr/sbin/iptables a link to
    /etc/alternatives/iptables -> xtables-nft-multi or xtables-legacy-multi;
    anything else (a distro without alternatives) is asked with `iptables -V`,
    which prints "(nf_tables)" or "(legacy)"."""
    if choice in ("nft", "legacy"):
        return choice
    if choice != "auto":
        raise ValueError(f"--iptables must be one of {', '.join(FLAVOURS)}, not {choice!r}")
    if find is None:
        from nsbox import tools

        find = tools.find
    found = find("iptables")
    if found is None:
        return "legacy"
    target = os.path.basename(os.path.realpath(found))
    if "nft" in target:
        return "nft"
    if "legacy" in target:
        return "legacy"
    version = subprocess.run([found, "-V"], capture_output=True, text=True, check=False, env=tool_env()).stdout
    return "nft" if "nf_tables" in version else "legacy"


def restore_text(firewall: Firewall, family: int = 4) -> str:
    """The node's tables of FAMILY as {ip,ip6}tables-restore input (what `nsbox explain` shows, too)."""
    out = []
    for model in firewall.used_tables(family):
        out += [f"*{model.name}", *model.save_lines(), "COMMIT"]
    return "\n".join(out) + "\n"


def program(family: int, flavour: str, verb: str) -> str:
    """Absolute path of e.g. ip6tables-nft-restore, or InstallError."""
    from nsbox import tools

    name = f"{FAMILIES[family]}-{flavour}-{verb}"
    prog = tools.find(name)
    if prog is None:
        other = "legacy" if flavour == "nft" else "nft"
        raise InstallError(f"{name} is not installed (apt install iptables), or use --iptables {other}")
    return prog


def apply(node: str, firewall: Firewall, flavour: str = "legacy") -> None:
    """Apply FIREWALL to the netns the current thread is in: one restore per family.

    A child forked from this thread starts in the thread's netns (setns is per task)."""
    for family in FAMILIES:
        text = restore_text(firewall, family)
        if text == "\n":
            continue
        prog = program(family, flavour, "restore")
        done = subprocess.run([prog], input=text, capture_output=True, text=True, check=False, env=tool_env())
        if done.returncode != 0 and "Message too long" in done.stderr:
            # The whole ruleset is one nf_tables batch. iptables-nft raises its socket's
            # send buffer with SO_SNDBUFFORCE, which needs CAP_NET_ADMIN in the initial
            # user namespace: inside the sandbox a batch is capped at
            # net.core.wmem_default (~208 KB, ~1,000 rules). Then the tables go in as
            # several restores: chains and policies first, rules in chunks (--noflush).
            for chunk, flags in restore_chunks(firewall, family):
                done = subprocess.run([prog, *flags], input=chunk, capture_output=True, text=True, check=False,
                                      env=tool_env())
                if done.returncode != 0:
                    break
        if done.returncode != 0:
            detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise KernelError(f"{node}: {os.path.basename(prog)}: {detail}")


RESTORE_CHUNK = 400  # rules per restore when one batch is too big (well under wmem_default)


def restore_chunks(firewall: Firewall, family: int = 4) -> list[tuple[str, list[str]]]:
    """FIREWALL's FAMILY tables as several restore inputs, in order: (text, extra flags)."""
    heads: list[str] = []
    rules: list[tuple[str, str]] = []
    for model in firewall.used_tables(family):
        lines = model.save_lines()
        heads += [f"*{model.name}", *[ln for ln in lines if ln.startswith(":")], "COMMIT"]
        rules += [(model.name, ln) for ln in lines if not ln.startswith(":")]
    out = [("\n".join(heads) + "\n", [])]
    for i in range(0, len(rules), RESTORE_CHUNK):
        text: list[str] = []
        table = None
        for name, line in rules[i:i + RESTORE_CHUNK]:
            if name != table:
                text += (["COMMIT"] if table else []) + [f"*{name}"]
                table = name
            text.append(line)
        out.append(("\n".join(text + ["COMMIT"]) + "\n", ["--noflush"]))
    return out


def saved_counters(text: str, only_drops: bool = False) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """`iptables-save -c` TEXT -> (table, chain) -> [(rule as rendered, packets)] in
    kernel order; the policy of a builtin chain is the entry "policy". ONLY_DROPS
    keeps only rules that jump to DROP or REJECT."""
    out: dict[tuple[str, str], list[tuple[str, int]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif m := re.match(r"^:(\S+) (\S+) \[(\d+):\d+\]", line):
            if m.group(2) != "-":
                out.setdefault((table, m.group(1)), []).append(("policy", int(m.group(3))))
        elif m := re.match(r"^\[(\d+):\d+\] -A (\S+) (.*)$", line):
            spec = m.group(3)
            if only_drops and not re.search(r" -j (DROP|REJECT)\b", spec):
                continue  # parsing is the cost here (200 raw rules: ~7 ms); keep only what is asked for
            try:
                spec = parse_rule(spec).render()
            except ValidationError:
                pass  # a rule the model cannot express: never one of ours
            out.setdefault((table, m.group(2)), []).append((spec, int(m.group(1))))
    return out


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
    from nsbox.kernel import netns

    prog = program(family, flavour, "save")
    with netns.entered(path):
        done = subprocess.run([prog, "-c"], capture_output=True, text=True, check=False, env=tool_env())
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
