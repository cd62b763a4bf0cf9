"""State dumps of one namespace by the real tools, each into its own file.

Each tool runs under `nsenter --net=PATH` with a timeout, so a wedged tool
costs at most TIMEOUT seconds; a missing or failing tool leaves a note file
instead of the dump. These are the files a person opens, and the tools are
observers independent of nsbox's own view of what it built.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from nsbox import tools
from nsbox.artifacts.folder import Folder
from nsbox.kinds.firewalls import kinds as firewall_kinds

TIMEOUT = 5.0


@dataclass(frozen=True)
class Dump:
    file: str            # name inside the node's folder
    argv: tuple[str, ...]
    package: str
    optional: bool = False  # absent tool: no note (e.g. iptables-nft-save on a legacy-only system)


DUMPS = (
    Dump("addr.json", ("ip", "-j", "addr", "show"), "iproute2"),
    Dump("link.json", ("ip", "-j", "-d", "link", "show"), "iproute2"),
    Dump("route.json", ("ip", "-4", "-j", "route", "show", "table", "all"), "iproute2"),
    Dump("route6.json", ("ip", "-6", "-j", "route", "show", "table", "all"), "iproute2"),
    Dump("neigh.json", ("ip", "-j", "neigh", "show"), "iproute2"),
    Dump("ip-rule.json", ("ip", "-j", "rule", "show"), "iproute2"),
    # Each firewall kind's own dumps (nsbox/kinds/firewalls/).
    *(Dump(*spec) for kind in firewall_kinds() for spec in kind.dumps),
    Dump("conntrack.txt", ("conntrack", "-L", "-f", "ipv4"), "conntrack"),
    Dump("conntrack6.txt", ("conntrack", "-L", "-f", "ipv6"), "conntrack"),
)

# A machine's state as a person reads it on a kind or flannel node (`run --artifacts DIR
# --node-state`): the tools' own text, not JSON.
NODE_DUMPS = (
    Dump("ip-addr.txt", ("ip", "addr", "show"), "iproute2"),
    Dump("ip-route.txt", ("ip", "route", "show"), "iproute2"),
    Dump("ip-neigh.txt", ("ip", "neigh", "show"), "iproute2"),
    Dump("bridge-fdb.txt", ("bridge", "fdb", "show"), "iproute2"),
    Dump("iptables-save.txt", ("iptables-save",), "iptables"),
    Dump("ipset.txt", ("ipset", "list"), "ipset", optional=True),
)


def dump_node(netns_path: str, folder: Folder, dumps: tuple[Dump, ...] = DUMPS) -> list[str]:
    """Run every dump of DUMPS inside the namespace at NETNS_PATH into FOLDER (files
    created new, through its fd); return the paths of the files written."""
    nsenter = tools.find("nsenter")
    written = []
    for d in dumps:
        target = d.file
        program = tools.find(d.argv[0])
        if nsenter is None or program is None:
            if d.optional and nsenter is not None:
                continue
            missing = d.argv[0] if program is None else "nsenter"
            written.append(_note(folder, target, f"not dumped: '{missing}' is not installed "
                                         f"(apt install {d.package if program is None else 'util-linux'})\n"))
            continue
        argv = [nsenter, f"--net={netns_path}", program, *d.argv[1:]]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            written.append(_note(folder, target, f"not dumped: {' '.join(d.argv)} did not finish in {TIMEOUT:.0f} s\n"))
            continue
        with folder.create(target) as f:
            f.write(done.stdout)
        written.append(folder.join(target))
        # conntrack prints its count on stderr ("N flow entries have been shown"): not an error.
        if done.returncode != 0:
            written.append(_note(folder, target, f"$ {' '.join(d.argv)}\nexit {done.returncode}\n"
                                         f"{done.stderr.decode(errors='replace')}"))
    return written


def _note(folder: Folder, target: str, text: str) -> str:
    name = target + ".error.txt"
    with folder.create(name) as f:
        f.write(text.encode())
    return folder.join(name)
