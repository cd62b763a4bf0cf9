"""A node's native nftables rulesets (`nft -f` input), the firewall kind the Docker
and kube-proxy nftables backends are written in.

Each ruleset is applied by one `nft -f -` started in the node's netns: nft loads a
file as one transaction, so a ruleset is in the kernel whole or not at all.
Validation runs `nft -c -f -` (check only) in a throwaway netns before anything is
built, so a syntax or kernel error is one line and exit 2."""

from __future__ import annotations

import re
import subprocess

from nsbox.errors import InstallError, KernelError, ValidationError
from nsbox.model.lab import Lab

INSTALL_HINT = "nft is not installed (apt install nftables)"


def nft() -> str:
    from nsbox import tools

    prog = tools.find("nft")
    if prog is None:
        raise InstallError(INSTALL_HINT)
    return prog


def _load(text: str, check: bool) -> subprocess.CompletedProcess:
    argv = [nft(), *(["-c"] if check else []), "-f", "-"]
    return subprocess.run(argv, input=text, capture_output=True, text=True, check=False)


def _first_error(stderr: str) -> str:
    """nft prints `/dev/stdin:3:9-12: Error: ...` then the line and carets: keep the first line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[0].replace("/dev/stdin:", "line ", 1) if lines else "refused"


def apply(node: str, rulesets: list[str]) -> None:
    """Load RULESETS, in order, into the netns the current thread is in."""
    for i, text in enumerate(rulesets, 1):
        done = _load(text, check=False)
        if done.returncode != 0:
            raise KernelError(f"{node}: nft -f (ruleset {i}): {_first_error(done.stderr)}")


def check_lab(lab: Lab) -> None:
    """ValidationError for a ruleset nft refuses, tried in a throwaway netns; a lab
    that uses nftables must say so with lab.require("nftables") (so it SKIPs where
    nft or nf_tables is missing)."""
    from nsbox.kernel import netns

    users = [n for n in lab.nodes.values() if n.firewall.nft]
    if not users:
        return
    if "nftables" not in lab.requires:
        raise ValidationError(f"node {users[0].name} has an nftables ruleset: "
                              f"add lab.require(\"nftables\") to recipe {lab.name}")
    for node in users:
        for i, text in enumerate(node.firewall.nft, 1):
            with netns.scratch():
                done = _load(text, check=True)
            if done.returncode != 0:
                raise ValidationError(f"node {node.name}: nftables ruleset {i}: {_first_error(done.stderr)}")


def probe() -> str | None:
    """Why nftables cannot be used here, or None. Runs in a scratch netns."""
    from nsbox import tools

    prog = tools.find("nft")
    if prog is None:
        return INSTALL_HINT
    done = subprocess.run([prog, "list", "tables"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"nft list tables: {_first_error(done.stderr)}"
    return None


_COUNTER = re.compile(r"\s*counter packets (\d+) bytes \d+")


def listed_rules(text: str) -> list[tuple[str, str, int | None]]:
    """`nft list ruleset` text -> (chain as "FAMILY TABLE CHAIN", rule text without its counter,
    packets or None for a rule without a counter), in order."""
    out: list[tuple[str, str, int | None]] = []
    family = table = chain = None
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"^table (\S+) (\S+) \{$", line)
        if m:
            family, table, chain = m.group(1), m.group(2), None
            continue
        m = re.match(r"^chain (\S+) \{$", line)
        if m:
            chain = m.group(1)
            continue
        if line == "}":
            chain = None  # a chain's end (a table's end leaves no chain open either)
            continue
        if not line or chain is None or line.startswith(("type ", "policy ")):
            continue
        c = _COUNTER.search(line)
        out.append((f"{family} {table} {chain}", _COUNTER.sub("", line).strip(), int(c.group(1)) if c else None))
    return out


def rule_counters(path: str) -> list[tuple[str, str, int | None]]:
    """listed_rules() of the netns at PATH, read with `nft list ruleset` inside it."""
    from nsbox.kernel import netns

    with netns.entered(path):
        done = subprocess.run([nft(), "list", "ruleset"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KernelError(f"nft list ruleset: {_first_error(done.stderr) or done.returncode}")
    return listed_rules(done.stdout)


def matching(rules: list[tuple[str, str, int | None]], chain: str, spec: str, drops: bool = True) -> list[int]:
    """Indexes of the rules of CHAIN ("FAMILY TABLE CHAIN") whose text holds SPEC and that drop
    (DROPS False: whatever their verdict, as counted_by names them)."""
    return [i for i, (ch, text, _) in enumerate(rules)
            if ch == chain and spec in text and (not drops or re.search(r"\b(drop|reject)\b", text))]
