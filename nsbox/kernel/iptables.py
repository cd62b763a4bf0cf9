"""Write a node's Firewall model where the distribution's `iptables` looks.

Two flavours share the iptables-save language the model is written in:

- nft (Debian 12, Ubuntu 24.04: `iptables` is xtables-nft-multi): the node's
  tables go through `iptables-nft-restore` in one atomic transaction, as dockerd
  and kube-proxy apply theirs; plain `iptables -S` / `iptables-save` show them.
- legacy (xtables): python-iptables writes them in-process (no fork per node).
  libiptc binds a table handle to the netns of the thread that initialises it,
  and iptc caches Table objects by name, so each table is refreshed after
  entering the node and committed once (one atomic replace per table).

`auto` picks what `iptables` resolves to on this system.
"""

from __future__ import annotations

import os

from nsbox.errors import REINSTALL, InstallError, KernelError, missing_module
from nsbox.model.firewall import Firewall
from nsbox.model.rules import Rule


_loaded: list = []  # the iptc module once it has loaded (importing it is slow: it runs ldconfig)


def _iptc():
    """The python-iptables module, or InstallError: a libxtables that does not load
    is a broken installation, never a kernel without NAT."""
    if _loaded:
        return _loaded[0]
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


FLAVOURS = ("auto", "nft", "legacy")


def resolve_flavour(choice: str = "auto") -> str:
    """nft or legacy: CHOICE, or for auto what the system's `iptables` is."""
    from nsbox import tools

    if choice in ("nft", "legacy"):
        return choice
    found = tools.find("iptables")
    if found is None:
        return "legacy"
    target = os.path.realpath(found)
    if "nft" in os.path.basename(target):
        return "nft"
    if "legacy" in os.path.basename(target):
        return "legacy"
    import subprocess

    version = subprocess.run([found, "-V"], capture_output=True, text=True, check=False).stdout
    return "nft" if "nf_tables" in version else "legacy"


def restore_text(firewall: Firewall) -> str:
    """The node's tables as iptables-restore input (what `nsbox explain` shows, too)."""
    out = []
    for model in firewall.used_tables():
        out += [f"*{model.name}", *model.save_lines(), "COMMIT"]
    return "\n".join(out) + "\n"


def apply(node: str, firewall: Firewall, flavour: str = "legacy") -> None:
    """Apply FIREWALL to the netns the current thread is in."""
    if flavour == "nft":
        _restore(node, firewall)
        return
    iptc = _iptc()
    for model in firewall.used_tables():
        try:
            table = iptc.Table(model.name)
            table.autocommit = False
            table.refresh()  # a fresh handle in *this* netns
            for chain in model.chains.values():
                if not chain.builtin:
                    table.create_chain(chain.name)
            for chain in model.chains.values():
                ch = iptc.Chain(table, chain.name)
                if chain.policy:
                    ch.set_policy(iptc.Policy(chain.policy))
                for rule in chain.rules:
                    ch.append_rule(_to_iptc(iptc, rule))
            table.commit()
            table.refresh()  # never close(): iptc's Target() looks up every cached table
        except (KernelError, InstallError):
            raise
        except Exception as e:
            raise KernelError(f"{node}: iptables -t {model.name}: {e}") from None


def _neg(v) -> str:
    return ("!" if v.invert else "") + v.value


def _to_iptc(iptc, rule: Rule):
    r = iptc.Rule()
    if rule.src:
        r.src = _neg(rule.src)
    if rule.dst:
        r.dst = _neg(rule.dst)
    if rule.in_iface:
        r.in_interface = _neg(rule.in_iface)
    if rule.out_iface:
        r.out_interface = _neg(rule.out_iface)
    if rule.proto:
        r.protocol = _neg(rule.proto)
    try:
        for m in rule.matches:
            match = r.create_match(m.name)
            for o in m.options:
                match.parse(o.name, ("!" if o.invert else "") + (o.value or ""))
        if rule.target:
            target = r.create_target(rule.target.name)
            for o in rule.target.options:
                target.parse(o.name, ("!" if o.invert else "") + (o.value or ""))
    except Exception as e:
        raise KernelError(f"iptables rule {rule.render()!r}: {e}") from None
    return r


def _restore(node: str, firewall: Firewall) -> None:
    """One atomic iptables-nft-restore; a child forked from this thread starts in its netns."""
    import subprocess

    from nsbox import tools

    prog = tools.find("iptables-nft-restore")
    if prog is None:
        raise InstallError("iptables-nft-restore is not installed (apt install iptables), or use --iptables legacy")
    done = subprocess.run([prog], input=restore_text(firewall), capture_output=True, text=True, check=False)
    if done.returncode != 0 and "Message too long" in done.stderr:
        # The whole ruleset is one nf_tables batch. iptables-nft raises its socket's send
        # buffer with SO_SNDBUFFORCE, which needs CAP_NET_ADMIN in the initial user
        # namespace: inside the sandbox the batch is capped at net.core.wmem_default
        # (~208 KB, ~1,000 rules). Then the tables go in as several restores: the
        # chains and policies first, the rules appended in chunks (--noflush).
        for text, flags in restore_chunks(firewall):
            done = subprocess.run([prog, *flags], input=text, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                break
    if done.returncode != 0:
        raise KernelError(f"{node}: iptables-nft-restore: {' '.join(done.stderr.split()) or done.returncode}")


RESTORE_CHUNK = 400  # rules per restore when one batch is too big (well under wmem_default)


def restore_chunks(firewall: Firewall) -> list[tuple[str, list[str]]]:
    """FIREWALL as several iptables-restore inputs, in order: (text, extra flags)."""
    heads, rules = [], []
    for model in firewall.used_tables():
        lines = model.save_lines()
        heads += [f"*{model.name}", *[l for l in lines if l.startswith(":")], "COMMIT"]
        rules += [(model.name, l) for l in lines if not l.startswith(":")]
    out = [("\n".join(heads) + "\n", [])]
    for i in range(0, len(rules), RESTORE_CHUNK):
        chunk, text, table = rules[i:i + RESTORE_CHUNK], [], None
        for name, line in chunk:
            if name != table:
                text += (["COMMIT"] if table else []) + [f"*{name}"]
                table = name
            text.append(line)
        out.append(("\n".join(text + ["COMMIT"]) + "\n", ["--noflush"]))
    return out


def drop_counters(path: str, firewall: Firewall, flavour: str = "legacy") -> dict[tuple[str, str, str], int]:
    """Packet counters of every DROP/REJECT rule and DROP policy of FIREWALL, read in
    the netns at PATH: (table, chain, rule spec as rendered, or "policy") -> packets.

    The kernel's own accounting of which rule dropped a probe; rules sit in the
    kernel in the model's order (apply() appends them one by one)."""
    from nsbox.kernel import netns

    if flavour == "nft":
        return _saved_drop_counters(path, firewall)
    iptc = _iptc()
    out: dict[tuple[str, str, str], int] = {}
    with netns.entered(path):
        for model in firewall.used_tables():
            table = iptc.Table(model.name)
            table.refresh()
            for chain in model.chains.values():
                wanted = [(i, r) for i, r in enumerate(chain.rules) if r.jumps_to in ("DROP", "REJECT")]
                if not wanted and chain.policy != "DROP":
                    continue
                kernel_chain = iptc.Chain(table, chain.name)
                rules = kernel_chain.rules
                for i, r in wanted:
                    if i < len(rules):
                        out[(model.name, chain.name, r.render())] = rules[i].get_counters()[0]
                if chain.policy == "DROP":
                    out[(model.name, chain.name, "policy")] = kernel_chain.get_counters()[0]
    return out


def _saved_drop_counters(path: str, firewall: Firewall) -> dict[tuple[str, str, str], int]:
    """drop_counters() read from `iptables-nft-save -c` in the node."""
    import re
    import subprocess

    from nsbox import tools
    from nsbox.kernel import netns

    prog = tools.find("iptables-nft-save")
    if prog is None:
        raise InstallError("iptables-nft-save is not installed (apt install iptables)")
    with netns.entered(path):
        text = subprocess.run([prog, "-c"], capture_output=True, text=True, check=False).stdout
    # kernel order: the k-th '-A CHAIN' line of a table is the model's k-th rule of CHAIN
    policy: dict[tuple[str, str], int] = {}
    rules: dict[tuple[str, str], list[int]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif m := re.match(r"^:(\S+) (\S+) \[(\d+):\d+\]", line):
            policy[(table, m.group(1))] = int(m.group(3))
        elif m := re.match(r"^\[(\d+):\d+\] -A (\S+) ", line):
            rules.setdefault((table, m.group(2)), []).append(int(m.group(1)))
    out: dict[tuple[str, str, str], int] = {}
    for model in firewall.used_tables():
        for chain in model.chains.values():
            counts = rules.get((model.name, chain.name), [])
            for i, r in enumerate(chain.rules):
                if r.jumps_to in ("DROP", "REJECT") and i < len(counts):
                    out[(model.name, chain.name, r.render())] = counts[i]
            if chain.policy == "DROP" and (model.name, chain.name) in policy:
                out[(model.name, chain.name, "policy")] = policy[(model.name, chain.name)]
    return out
