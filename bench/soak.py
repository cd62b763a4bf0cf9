#!/usr/bin/env python3
"""Soak: every recipe, many times in a row, in ONE nsbox process: no failure, no leak.

    /opt/nsbox/venv/bin/python bench/soak.py [--rounds 50] [--recipes NAME,NAME]

Runs in a sandbox of its own (unshare --user --map-root-user --mount --net --pid, a
private /run), like `nsbox run`. Each round runs every recipe (default parameters)
through the very run_lab() of `nsbox run`: build, serve, verify, tear down. After
every round it looks, from outside nsbox's own bookkeeping, at what this process
holds: open file descriptors (/proc/self/fd), threads (/proc/self/task), child
processes (/proc/*/stat whose parent is this process), resident memory
(/proc/self/statm), and pinned namespaces (/run/netns). Fails (exit 1) on the first
check that fails, a namespace or child process left after a round, or descriptors,
threads or memory growing past round 2 (memory: by more than --rss-slack MiB).
The CI runs a few rounds (tests/kernel/test_kernel_soak.py); the full count is the command above.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSIDE = "NSBOX_SOAK_INSIDE"


def children() -> list[int]:
    me, out = os.getpid(), []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.append(int(p))
    return out


def held() -> dict:
    page = os.sysconf("SC_PAGE_SIZE")
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task")),
            "rss_mib": int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20,
            "children": children(), "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--recipes", default="", help="comma-separated names (default: every recipe)")
    ap.add_argument("--rss-slack", type=float, default=8.0, help="MiB of memory growth allowed after round 2")
    a = ap.parse_args()
    if os.environ.get(INSIDE) != "1":
        env = dict(os.environ, **{INSIDE: "1"})
        os.execvpe("unshare", ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
                               "--kill-child", "--mount-proc", sys.executable, __file__, *sys.argv[1:]], env)
    if ctypes.CDLL(None).mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755") != 0:
        sys.exit("soak: cannot mount a private /run")
    sys.path.insert(0, str(REPO))
    from nsbox import recipe
    from nsbox.cli import load_labs
    from nsbox.runner import RunOptions, run_lab

    names = a.recipes.split(",") if a.recipes else sorted(recipe.catalogue(()).recipes)
    labs = load_labs(tuple(names), {}, ())
    opts = RunOptions()
    first = second = None
    t0 = time.monotonic()
    for rnd in range(1, a.rounds + 1):
        statuses = []
        for lab in labs:
            r = run_lab(lab, opts)
            statuses.append(f"{lab.name}={r.status}")
            if r.status == "fail":
                bad = [c for c in r.checks if not c.passed]
                print(f"soak: round {rnd}: {lab.name} failed: {r.error or ''} "
                      + "; ".join(f"{c.name}: {c.observed} ({c.detail})" for c in bad[:3]))
                return 1
        h = held()
        print(f"round {rnd}: {' '.join(statuses)}  fds {h['fds']} threads {h['threads']} "
              f"rss {h['rss_mib']:.1f} MiB  {time.monotonic() - t0:.1f} s", flush=True)
        if h["netns"] or h["children"]:
            print(f"soak: round {rnd} left namespaces {h['netns']} or child processes {h['children']}")
            return 1
        first = first or h
        if rnd == 2:
            second = h
        if second and (h["fds"] > second["fds"] or h["threads"] > second["threads"]
                       or h["rss_mib"] > second["rss_mib"] + a.rss_slack):
            print(f"soak: round {rnd} holds more than round 2: {h} vs {second}")
            return 1
    print(f"soak: {a.rounds} rounds of {len(labs)} recipes passed; fds {first['fds']} -> {h['fds']}, "
          f"threads {first['threads']} -> {h['threads']}, rss {first['rss_mib']:.1f} -> {h['rss_mib']:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
