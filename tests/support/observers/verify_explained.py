"""Verify a lab that `nsbox explain`'s script built (run inside the same sandbox).

The script pinned each node at /run/netns/NODE; nsbox's verifier is pointed at
those pins (no realize: nothing here builds anything), starts the recipe's
servers and runs its checks. Prints one line per check; exit 0 when all pass.
"""

import os
import sys

from nsbox.cli import load_labs, parse_sets
from nsbox.host import programs as iptables
from nsbox.host.journal import Journal
from nsbox.kernel.realize import Realized
from nsbox.verify.verifier import start_servers, verify

name, *sets = sys.argv[1:]  # NSBOX_TEST_RECIPES: extra recipe directories, ':'-separated
dirs = tuple(d for d in os.environ.get("NSBOX_TEST_RECIPES", "").split(":") if d)
lab = load_labs((name,), parse_sets(tuple(sets)), dirs)[0]
built = Realized(lab, Journal(), {n: f"/run/netns/{n}" for n in lab.nodes}, iptables.resolve_flavour("auto"))
servers = start_servers(built)
try:
    results = verify(built, servers)
finally:
    servers.close()
for r in results:
    print(("PASS" if r.passed else "FAIL"), r.name, r.detail if not r.passed else "")
sys.exit(0 if results and all(r.passed for r in results) else 1)
