"""What the iptables and ip6tables kinds share (this module registers no kind itself).

A node's tables of one family go to the kernel as one `{ip,ip6}tables-<flavour>-restore`
run (an atomic transaction, as dockerd and kube-proxy apply theirs), whose input
restore_text() writes (what `nsbox explain` shows, too); `--test` validates it,
`-save -c` reads counters back."""

from __future__ import annotations

import re

from nsbox.kinds.firewalls import FirewallKind

_AT_LINE = re.compile(r"Error occurred at line: (\d+)")
FAMILIES = {4: "iptables", 6: "ip6tables"}


def restore_text(firewall, family: int = 4) -> str:
    """The node's tables of FAMILY as {ip,ip6}tables-restore input (what `nsbox explain` shows, too)."""
    out = []
    for model in firewall.used_tables(family):
        out += [f"*{model.name}", *model.save_lines(), "COMMIT"]
    return "\n".join(out) + "\n"


RESTORE_CHUNK = 400  # rules per restore when one batch is too big (well under wmem_default)


def restore_chunks(firewall, family: int = 4) -> list[tuple[str, list[str]]]:
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


def xtables_kind(family: int, order: int) -> FirewallKind:
    tool = FAMILIES[family]

    def inputs(firewall) -> list[str]:
        text = restore_text(firewall, family)
        return [] if text == "\n" else [text]

    def split(firewall, stderr: str) -> list[tuple[str, list[str]]] | None:
        # The whole ruleset is one nf_tables batch. iptables-nft raises its socket's
        # send buffer with SO_SNDBUFFORCE, which needs CAP_NET_ADMIN in the initial
        # user namespace: inside the sandbox a batch is capped at
        # net.core.wmem_default (~208 KB, ~1,000 rules). Then the tables go in as
        # several restores: chains and policies first, rules in chunks (--noflush).
        return restore_chunks(firewall, family) if "Message too long" in stderr else None

    def refused(stderr: str, text: str, i: int) -> str:
        return f"{tool}-restore refuses {_what(stderr, text)}"

    return FirewallKind(
        name=tool, order=order, feature="nat",
        inputs=inputs,
        commands=lambda fw: [(f"{tool}-restore", text) for text in inputs(fw)],
        load_argv=lambda flavour, check: [f"{tool}-{flavour}-restore", *(["--test"] if check else [])],
        refused=refused,
        save_argv=lambda flavour: [f"{tool}-{flavour}-save", "-c"],
        # The system's `iptables` (where nsbox's rules go by default), and both backends
        # by name: --iptables may have chosen the other one.
        dumps=((f"{tool}.txt", (f"{tool}-save", "-c"), "iptables", False),
               (f"{tool}-legacy.txt", (f"{tool}-legacy-save", "-c"), "iptables", False),
               *([(f"{tool}-nft.txt", (f"{tool}-nft-save", "-c"), "iptables", True)] if family == 4 else [])),
        install_hint="apt install iptables, or use the other --iptables flavour",
        batchable=True,
        split=split,
        check_needs_program=False,
    )


def _what(stderr: str, text: str) -> str:
    """The error's first line and the rule it points at (iptables prints its line number)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first = lines[0] if lines else "the rules"
    first = re.sub(r"^\S+ v[\d.]+ \([^)]*\): ", "", first)
    m = _AT_LINE.search(stderr)
    rows = text.splitlines()
    if m and 0 < int(m.group(1)) <= len(rows):
        table = next((r[1:] for r in reversed(rows[:int(m.group(1))]) if r.startswith("*")), "?")
        return f"'{rows[int(m.group(1)) - 1]}' in table {table}: {first}"
    return first
