"""Failure artifacts: what explains a failed check, kept while the lab is still live.

`--artifacts DIR` makes the runner call `collect()` after verify() when a check
failed, before teardown. For each involved namespace it saves what the real
tools say (`ip -j addr/route/neigh/rule/link`, `iptables-*-save -c`,
`conntrack -L`), re-runs each failing probe once under a packet capture (pcap),
and writes DIR/RECIPE/README.txt + summary.json saying which files belong to
which check. The tools are the independent observers; nsbox only files them.

Layout: target.py (checking DIR, imported before the sandbox: keep it light),
involved.py, dumps.py, capture.py + pcap.py, collect.py (the entry point).
"""
