#!/usr/bin/env python3
"""Probe rate: how many TCP probes per second nsbox's verifier runs on a correct lab.

Builds bench/recipes/probe_bench.py (N nodes routed through one host, an all-pairs
TCP matrix of N*(N-1) probes) with `nsbox run` in a sandbox, and reads the verify
time from the JSON report. The baseline, measured in the same lab in the same run
(through --then): what a shell script does for the same probes,
`ip netns exec SRC bash -c 'exec 3<>/dev/tcp/DST/7'`, over a sample of pairs.

    /opt/nsbox/venv/bin/python bench/bench_probes.py [--nodes 50] [--repeat 3] [--baseline-sample 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

BASELINE = r"""
n=0; start=$(date +%s.%N)
for pair in {pairs}; do
  src=${{pair%%:*}}; dst=${{pair#*:}}
  ip netns exec "$src" bash -c "exec 3<>/dev/tcp/$dst/7 && echo x >&3 && head -c2 <&3 >/dev/null" && n=$((n+1))
done
end=$(date +%s.%N)
echo "BASELINE $n $start $end" > {out}
"""


def run_once(nodes: int, sample: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "baseline"
        pairs = []
        for i in range(nodes):
            for j in range(nodes):
                if i != j and len(pairs) < sample and (i * nodes + j) % max(1, nodes * nodes // sample) == 0:
                    pairs.append(f"n{i}:10.{100 + j // 250}.{j % 250}.2")
        then = BASELINE.format(pairs=" ".join(pairs), out=out)
        t0 = time.monotonic()
        cp = subprocess.run([sys.executable, "-m", "nsbox", "run", "probe-bench", "--recipes", str(HERE / "recipes"),
                             "--set", f"nodes={nodes}", "--format", "json", "--then", then],
                            cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if cp.returncode != 0:
            sys.exit(f"nsbox run failed ({cp.returncode}):\n{cp.stderr[-2000:]}\n{cp.stdout[-2000:]}")
        r = json.loads(cp.stdout)["results"][0]
        _, n, start, end = out.read_text().split()
        return {"probes": len(r["checks"]), "verify_s": r["verify_ms"] / 1000, "build_s": r["build_ms"] / 1000,
                "wall_s": wall, "baseline_probes": int(n), "baseline_s": float(end) - float(start)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-sample", type=int, default=100)
    a = ap.parse_args()
    runs = [run_once(a.nodes, a.baseline_sample) for _ in range(a.repeat)]
    rate = [r["probes"] / r["verify_s"] for r in runs]
    base = [r["baseline_probes"] / r["baseline_s"] for r in runs]
    med = statistics.median(rate)
    print(f"probe-bench: {a.nodes} nodes, {runs[0]['probes']} TCP probes per run (all-pairs), {a.repeat} runs")
    print(f"  nsbox verifier:   {med:8.0f} probes/s  (median; runs: {', '.join(f'{x:.0f}' for x in rate)})")
    print(f"  shell baseline:   {statistics.median(base):8.0f} probes/s  (ip netns exec + bash /dev/tcp, "
          f"{runs[0]['baseline_probes']} pairs)")
    print(f"  ratio:            {med / statistics.median(base):8.1f}x")
    print(f"  end to end:       {statistics.median(r['wall_s'] for r in runs):8.2f} s per `nsbox run` "
          f"(build {statistics.median(r['build_s'] for r in runs):.2f} s; includes the baseline)")


if __name__ == "__main__":
    main()
