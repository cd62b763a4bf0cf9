#!/usr/bin/env python3
"""kube-proxy rules for N Services x M endpoints: render + apply, against one restore.

    python3 bench/bench_kubeproxy.py [--services 1000] [--endpoints 3] [--repeat 5] [--json]

For each mode, in one run and on the same kernel:

  iptables  render  `kubeproxy.iptables.Proxier().sync()` (a full sync: the payload)
            apply   `iptables-restore --noflush` of that payload (what kube-proxy runs)
            base    one `iptables-restore --noflush` of the same, pre-rendered payload
  nftables  render  `kubeproxy.nftables.render().text()`
            apply   `nft -f` of it;  base: one `nft -f` of the same, pre-rendered text

render+apply is compared with base (the issue's budget: <= 1 s and <= 1.2 x base). The
tables are emptied between runs (untimed); the two alternate which goes first. kube-proxy's nfacct counters are left out
(`nfacct=False`, as kube-proxy does on a kernel without them), so no nfacct objects are
needed. Not a test: numbers only.

The script re-execs itself under `unshare --user --map-root-user --net` (or `unshare --net`
as root), so every rule lives in a namespace that dies with it; the host is not touched.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSIDE_ENV = "NSBOX_BENCH_INSIDE"
REPO = Path(__file__).resolve().parents[1]
now = time.perf_counter


def reexec_in_sandbox() -> None:
    if shutil.which("unshare") is None:
        sys.exit("bench_kubeproxy: util-linux 'unshare' is not installed")
    env = dict(os.environ, **{INSIDE_ENV: "1"})
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    cmd = ["unshare", *user, "--net", sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


def scenario(n_services: int, n_endpoints: int):
    from nsbox.kits.kubeproxy.model import Endpoint, EndpointSlice, EndpointSlicePort, Service, ServicePort
    services, slices = [], []
    for i in range(n_services):
        name = f"svc{i}"
        services.append(Service("bench", name, f"172.30.{i // 250}.{i % 250 + 1}", (ServicePort("http", 80),)))
        eps = tuple(Endpoint((f"10.{1 + i // 250}.{i % 250}.{j + 1}",)) for j in range(n_endpoints))
        slices.append(EndpointSlice("bench", name, eps, (EndpointSlicePort("http", 8080),), name=f"{name}-1"))
    return services, slices


def run(argv: list[str], stdin: str | None = None) -> None:
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"bench_kubeproxy: {' '.join(argv)}: {res.stderr.strip()}")


def ipt_tools() -> tuple[str, str]:
    for flavour in ("nft", "legacy"):
        restore = shutil.which(f"iptables-{flavour}-restore")
        ipt = shutil.which(f"iptables-{flavour}")
        if restore and ipt:
            return restore, ipt
    sys.exit("bench_kubeproxy: iptables-nft-restore / iptables-legacy-restore not found")


def empty_iptables(ipt: str) -> None:
    for table in ("filter", "nat"):
        run([ipt, "-t", table, "-F"])
        run([ipt, "-t", table, "-X"])


def timed(fn) -> float:
    t0 = now()
    fn()
    return now() - t0


def bench(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(REPO))
    from nsbox.kits.kubeproxy import iptables as kpipt
    from nsbox.kits.kubeproxy import nftables as kpnft
    from nsbox.kits.kubeproxy.model import ProxierConfig

    services, slices = scenario(args.services, args.endpoints)
    cfg = ProxierConfig(nfacct=False)
    restore, ipt = ipt_tools()
    results: dict = {"services": args.services, "endpoints_per_service": args.endpoints, "repeat": args.repeat}

    # iptables
    payload = kpipt.Proxier(cfg).sync(services, slices).payload
    results["iptables_payload_lines"] = payload.count("\n")
    rows: dict[str, list[float]] = {"render": [], "apply": [], "render+apply": [], "base": []}
    for i in range(args.repeat):
        # alternate which of the two goes first, so neither always follows the other
        for which in (("base", "ours") if i % 2 else ("ours", "base")):
            empty_iptables(ipt)
            gc.collect()
            if which == "base":
                rows["base"].append(timed(lambda: run([restore, "--noflush"], payload)))
                continue
            t0 = now()
            text = kpipt.Proxier(cfg).sync(services, slices).payload
            t1 = now()
            run([restore, "--noflush"], text)
            t2 = now()
            rows["render"].append(t1 - t0)
            rows["apply"].append(t2 - t1)
            rows["render+apply"].append(t2 - t0)
    empty_iptables(ipt)
    results["iptables"] = {k: statistics.median(v) for k, v in rows.items()}

    # nftables
    ncfg = ProxierConfig(node_port_addresses="primary")
    text = kpnft.render(ncfg, services, slices).text()
    results["nftables_lines"] = text.count("\n")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.nft"
        pre.write_text(text)
        rows = {"render": [], "apply": [], "render+apply": [], "base": []}
        for i in range(args.repeat):
            for which in (("base", "ours") if i % 2 else ("ours", "base")):
                run(["nft", "flush", "ruleset"])
                gc.collect()
                if which == "base":
                    rows["base"].append(timed(lambda: run(["nft", "-f", str(pre)])))
                    continue
                t0 = now()
                out = kpnft.render(ncfg, services, slices).text()
                t1 = now()
                run(["nft", "-f", "-"], out)
                t2 = now()
                rows["render"].append(t1 - t0)
                rows["apply"].append(t2 - t1)
                rows["render+apply"].append(t2 - t0)
        run(["nft", "flush", "ruleset"])
    results["nftables"] = {k: statistics.median(v) for k, v in rows.items()}
    for mode in ("iptables", "nftables"):
        r = results[mode]
        r["ratio"] = r["render+apply"] / r["base"]
        r["within_budget"] = r["render+apply"] <= 1.0 and r["ratio"] <= 1.2
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.services < 1 or args.services > 60000 or args.endpoints < 1 or args.endpoints > 250 or args.repeat < 1:
        print("bench_kubeproxy: --services 1..60000, --endpoints 1..250, --repeat >= 1", file=sys.stderr)
        sys.exit(2)
    if os.environ.get(INSIDE_ENV) != "1":
        reexec_in_sandbox()
    res = bench(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{res['services']} Services x {res['endpoints_per_service']} endpoints, median of {res['repeat']}")
    print(f"iptables payload {res['iptables_payload_lines']} lines, nftables {res['nftables_lines']} lines")
    print(f"{'mode':9} {'render':>8} {'apply':>8} {'r+a':>8} {'base':>8} {'ratio':>6}  budget(<=1s, <=1.2x)")
    for mode in ("iptables", "nftables"):
        r = res[mode]
        print(f"{mode:9} {r['render'] * 1000:7.1f}ms {r['apply'] * 1000:7.1f}ms {r['render+apply'] * 1000:7.1f}ms "
              f"{r['base'] * 1000:7.1f}ms {r['ratio']:6.2f}  {'ok' if r['within_budget'] else 'OVER'}")


if __name__ == "__main__":
    main()
