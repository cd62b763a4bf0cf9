#!/usr/bin/env python3
"""Bring-up / teardown benchmark for the bridge-mode recipe.

    python3 bench/bench_bridge.py [--containers 200] [--repeat 3] [--naive 20] [--profile] [--json]

Compares, in one run and on the same kernel:

  nsbox           realize() of recipes/bridge_mode.py and Realized.teardown()
  ip-batch        the same netns + veth + address + route work done by ONE
                  `ip -batch FILE` process (and one more for teardown)
  pyroute2-naive  IPRoute(netns=NAME) per container, which forks a helper per
                  namespace (small N only: it is the slow way, ~38 ms/container)

The script never touches the real host: it re-execs itself under
`unshare --user --map-root-user --mount --net --pid --fork --kill-child --mount-proc`
and mounts a private tmpfs on /run before anything else, so every namespace,
link, rule and file it makes dies with the sandbox, even after SIGKILL.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import json
import os
import platform
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

INSIDE_ENV = "NSBOX_BENCH_INSIDE"
REPO = Path(__file__).resolve().parents[1]
WORK = "/run/nsbox-bench"           # on the sandbox's private tmpfs
GATEWAY = "172.17.0.1"
UPLINK, UPSTREAM = "203.0.113.2", "203.0.113.1"
TARGET_MS = 5.0                     # nsbox bring-up budget per container
WARMUP_N = 2                        # the recipe's minimum
now = time.perf_counter


# --------------------------------------------------------------------------- sandbox

def reexec_in_sandbox() -> None:
    """Replace this process with itself inside a fresh user+mount+net+pid sandbox."""
    if shutil.which("unshare") is None:
        sys.exit("bench_bridge: util-linux 'unshare' is not installed")
    env = dict(os.environ, **{INSIDE_ENV: "1"})
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
           "--kill-child", "--mount-proc", sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", cmd, env)


def mount_private_run() -> None:
    """A tmpfs on /run, so /run/netns pins and scratch files stay in the sandbox."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755") != 0:
        e = ctypes.get_errno()
        sys.exit(f"bench_bridge: mount tmpfs on /run inside the sandbox: {os.strerror(e)}")
    os.makedirs(WORK, exist_ok=True)


# --------------------------------------------------------------------------- helpers

def sh(*cmd: str, check: bool = True) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> rc {p.returncode}: {p.stderr.strip()[:2000]}")
    return p.stdout


def netns_list() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.strip()]


def _netns_objects() -> int | None:
    """The kernel's count of live network namespaces (bench_speed.netns_slab: the
    net_namespace slab); None where it cannot be read."""
    from bench_speed import netns_slab  # beside this script, on sys.path when run as a file

    return netns_slab()


_BASE_NETNS = _netns_objects()


def settle(max_s: float = 30.0) -> float:
    """Wait until the kernel has finished freeing namespaces (cleanup_net runs on a
    workqueue after the last reference goes): the net_namespace slab count back to
    where it was when the benchmark started (+ slack for other users' namespaces).
    Where slabinfo is unreadable it does not wait (bench_speed.py settles from outside
    the sandbox, as real root). Returns the time waited, in ms."""
    t0 = now()
    while now() - t0 < max_s:
        n = _netns_objects()
        if n is None or _BASE_NETNS is None or n <= _BASE_NETNS + 8:
            break
        time.sleep(0.02)
    return (now() - t0) * 1000


def assert_clean(what: str) -> None:
    left = netns_list()
    pins = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    if left or pins:
        raise RuntimeError(f"{what}: namespaces left after teardown: {left or pins}")


def container_ip(i: int) -> str:
    n = i + 1
    return f"172.17.{n // 256}.{n % 256}"


def veth_name(i: int) -> str:
    return f"veth{(0x5eed000 + i * 0x9e37) & 0xfffffff:07x}"


def verify_bridge(n: int, nodes_expected: int) -> None:
    """Check with the real `ip` tool (an independent observer) that the build is there."""
    names = set(netns_list())
    want = {"host"} | {f"c{i}" for i in range(1, n + 1)}
    if not want <= names or len(names) != nodes_expected:
        raise RuntimeError(f"verify: expected {nodes_expected} netns incl. host, c1..c{n}; got {len(names)}")
    ports = [l for l in sh("ip", "-n", "host", "link", "show", "master", "docker0").splitlines()
             if re.match(r"^\d+: veth", l)]
    if len(ports) != n:
        raise RuntimeError(f"verify: {len(ports)} veths enslaved to docker0, expected {n}")
    br = sh("ip", "-n", "host", "-br", "addr", "show", "dev", "docker0")
    if f"{GATEWAY}/16" not in br or " UP " not in br:
        raise RuntimeError(f"verify: docker0 is not up with {GATEWAY}/16: {br.strip()}")
    for i in sorted({1, (n + 1) // 2, n}):
        c = f"c{i}"
        addr = sh("ip", "-n", c, "-br", "addr", "show", "dev", "eth0")
        if f"{container_ip(i)}/16" not in addr or " UP " not in addr:
            raise RuntimeError(f"verify: {c} eth0 is not up with {container_ip(i)}/16: {addr.strip()}")
        lo = sh("ip", "-n", c, "-br", "link", "show", "dev", "lo")
        if "<" not in lo or "UP" not in lo.split("<", 1)[1].split(">")[0].split(","):
            raise RuntimeError(f"verify: {c} lo is down: {lo.strip()}")
        route = sh("ip", "-n", c, "route", "show", "default")
        if f"via {GATEWAY}" not in route:
            raise RuntimeError(f"verify: {c} has no default via {GATEWAY}: {route.strip()!r}")
    # One packet over the bridge proves L2 + L3 end to end (all lab-internal).
    sh("ip", "netns", "exec", "c1", "ping", "-q", "-c", "1", "-W", "2", container_ip(n))


# --------------------------------------------------------------------------- variants

def cpu_ms() -> tuple[float, float]:
    """(user, sys) CPU ms of this process plus its reaped children (ip, helpers)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (a.ru_utime + b.ru_utime) * 1000, (a.ru_stime + b.ru_stime) * 1000


def _cpu_delta(c0: tuple[float, float], c1: tuple[float, float]) -> dict:
    return {"up_user_ms": c1[0] - c0[0], "up_sys_ms": c1[1] - c0[1]}


def run_nsbox(n: int) -> dict:
    from nsbox import recipe
    from nsbox.kernel import realize
    from nsbox.validate import validate

    t0 = now()
    rec = recipe.get("bridge-mode")
    t1 = now()
    lab = rec.build({"containers": str(n)})
    t2 = now()
    validate(lab)
    t3, c0 = now(), cpu_ms()
    built = realize.realize(lab)
    t4, c1 = now(), cpu_ms()
    try:
        verify_bridge(n, n + 3)  # + host, internet, lan
    except BaseException:
        built.teardown()
        raise
    t5 = now()
    problems = built.teardown()
    t6 = now()
    if problems:
        raise RuntimeError(f"nsbox teardown problems: {problems[:3]}")
    assert_clean("nsbox")
    return {
        "n": n,
        "up_ms": (t4 - t3) * 1000, "down_ms": (t6 - t5) * 1000,
        "load_ms": (t1 - t0) * 1000, "build_ms": (t2 - t1) * 1000, "validate_ms": (t3 - t2) * 1000,
        "model_ms": (t3 - t0) * 1000, **_cpu_delta(c0, c1),
        "settle_ms": settle(),
    }


def _write(path: str, lines: list[str]) -> str:
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def ip_batch_files(n: int) -> tuple[str, str]:
    """The build and teardown batches, plus the per-namespace batches they run.

    `ip -batch` has no per-line -n/-netns (iproute2 6.1: 'Object "-n" is unknown'),
    and addresses, routes and 'link set up' can only be made from inside a netns.
    So the one top-level batch creates the namespaces in-process and enters each
    node with `netns exec NODE ip -batch NODE.batch` (one fork+exec per node).
    Veth peers go straight into the container netns at creation (`peer ... netns cN`);
    a peer cannot be set up at creation (ENOTCONN), so eth0 is set up inside.
    """
    d = f"{WORK}/ip-batch"
    os.makedirs(d, exist_ok=True)
    host = ["link set lo up",
            "link add docker0 type bridge",
            f"addr add {GATEWAY}/16 dev docker0",
            "link set docker0 up",
            "link add eth0 up type veth peer name eth0 netns internet",
            f"addr add {UPLINK}/24 dev eth0",
            f"route add default via {UPSTREAM}"]
    host += [f"link add {veth_name(i)} master docker0 up type veth peer name eth0 netns c{i}"
             for i in range(1, n + 1)]
    _write(f"{d}/host.batch", host)
    _write(f"{d}/internet.batch", ["link set lo up", "link set eth0 up", f"addr add {UPSTREAM}/24 dev eth0"])
    for i in range(1, n + 1):
        _write(f"{d}/c{i}.batch", ["link set lo up", "link set eth0 up",
                                   f"addr add {container_ip(i)}/16 dev eth0",
                                   f"route add default via {GATEWAY}"])
    nodes = ["host", "internet"] + [f"c{i}" for i in range(1, n + 1)]
    build = [f"netns add {x}" for x in nodes]
    build += [f"netns exec {x} ip -batch {d}/{x}.batch" for x in nodes]
    down = [f"netns del {x}" for x in nodes]
    return _write(f"{d}/build.batch", build), _write(f"{d}/down.batch", down)


def run_ip_batch(n: int) -> dict:
    build, down = ip_batch_files(n)
    t0, c0 = now(), cpu_ms()
    sh("ip", "-batch", build)
    t1, c1 = now(), cpu_ms()
    try:
        verify_bridge(n, n + 2)
    except BaseException:
        sh("ip", "-force", "-batch", down, check=False)
        raise
    t2 = now()
    sh("ip", "-batch", down)
    t3 = now()
    assert_clean("ip-batch")
    return {"n": n, "up_ms": (t1 - t0) * 1000, "down_ms": (t3 - t2) * 1000, **_cpu_delta(c0, c1),
            "settle_ms": settle()}


def run_naive(n: int) -> dict:
    """The obvious pyroute2 code: one IPRoute(netns=NAME) per namespace (each one forks a
    helper to create the netns and another to open the socket inside it)."""
    from pyroute2 import IPRoute
    from pyroute2 import netns as pnetns

    names = ["host"] + [f"c{i}" for i in range(1, n + 1)]
    t0, c0 = now(), cpu_ms()
    try:
        host = IPRoute(netns="host")
        host.link("set", index=host.link_lookup(ifname="lo")[0], state="up")
        host.link("add", ifname="docker0", kind="bridge")
        br = host.link_lookup(ifname="docker0")[0]
        host.addr("add", index=br, address=GATEWAY, prefixlen=16)
        host.link("set", index=br, state="up")
        for i in range(1, n + 1):
            c = IPRoute(netns=f"c{i}")
            try:
                host.link("add", ifname=veth_name(i), kind="veth", master=br, state="up",
                          peer={"ifname": "eth0", "net_ns_fd": f"c{i}"})
                c.link("set", index=c.link_lookup(ifname="lo")[0], state="up")
                eth0 = c.link_lookup(ifname="eth0")[0]
                c.link("set", index=eth0, state="up")
                c.addr("add", index=eth0, address=container_ip(i), prefixlen=16)
                c.route("add", dst="0.0.0.0/0", gateway=GATEWAY)
            finally:
                c.close()
        host.close()
        t1, c1 = now(), cpu_ms()
        verify_bridge(n, n + 1)  # no internet node here
    except BaseException:
        for x in names:
            try:
                pnetns.remove(x)
            except OSError:
                pass
        raise
    t2 = now()
    for x in names:
        pnetns.remove(x)
    t3 = now()
    assert_clean("pyroute2-naive")
    return {"n": n, "up_ms": (t1 - t0) * 1000, "down_ms": (t3 - t2) * 1000, **_cpu_delta(c0, c1),
            "settle_ms": settle()}


# --------------------------------------------------------------------------- profiling

class _Tally:
    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*a, **kw):
            t = now()
            try:
                return fn(*a, **kw)
            finally:
                self.ms[label] += (now() - t) * 1000
                self.count[label] += 1
        return timed


@contextmanager
def instrumented() -> Iterator[_Tally]:
    """Time realize's steps by wrapping them (no edits to nsbox; restored afterwards)."""
    from nsbox.host import netns, rtnl
    from nsbox.kernel import firewall, realize, sysctl

    tally = _Tally()
    saved: list[tuple[object, str, object]] = []

    def patch(obj: object, attr: str, label: str) -> None:
        orig = getattr(obj, attr, None)
        if orig is None:  # realize's helpers change; time what exists (this crashed on _create_links)
            return
        saved.append((obj, attr, orig))
        setattr(obj, attr, tally.wrap(label, orig))

    patch(netns, "create", "netns.create (unshare+bind mount)")
    patch(realize, "apply_plan", "apply_plan (every step)")
    patch(rtnl.Rtnl, "__init__", "Rtnl() netlink socket open in the netns")
    patch(rtnl.Rtnl, "queue", "Rtnl.queue (pyroute2 encode)")
    patch(rtnl.Rtnl, "flush", "Rtnl.flush (sendmsg + acks)")
    patch(rtnl.Rtnl, "indexes", "Rtnl.indexes (ifindex lookups, one round)")
    patch(firewall, "apply", "firewall.apply ({ip,ip6}tables-restore, nft -f)")
    patch(sysctl, "write", "sysctl.write")
    patch(netns._libc, "setns", "libc.setns")
    patch(netns._libc, "unshare", "libc.unshare(CLONE_NEWNET)")
    patch(netns._libc, "mount", "libc.mount (bind)")
    try:
        yield tally
    finally:
        for obj, attr, orig in reversed(saved):
            setattr(obj, attr, orig)


def profile_nsbox(n: int, top: int) -> dict:
    from nsbox import recipe
    from nsbox.kernel import realize
    from nsbox.validate import validate

    lab = recipe.get("bridge-mode").build({"containers": str(n)})
    validate(lab)
    with instrumented() as tally:
        t0 = now()
        built = realize.realize(lab)
        total = (now() - t0) * 1000
    built.teardown()
    settle()
    phases = [{"step": k, "ms": round(tally.ms[k], 1), "calls": tally.count[k],
               "ms_per_container": round(tally.ms[k] / n, 3)} for k in sorted(tally.ms, key=tally.ms.get, reverse=True)]

    prof = cProfile.Profile()
    prof.enable()
    built = realize.realize(lab)
    prof.disable()
    built.teardown()
    settle()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"func": f"{_short(file)}:{line}({func})", "calls": nc,
                     "tottime_ms": round(tt * 1000, 1), "cumtime_ms": round(ct * 1000, 1)})
    by_tot = sorted(rows, key=lambda r: r["tottime_ms"], reverse=True)[:top]
    by_cum = sorted(rows, key=lambda r: r["cumtime_ms"], reverse=True)[:top]
    return {"n": n, "instrumented_total_ms": round(total, 1), "phases": phases,
            "cprofile_total_ms": round(stats.total_tt * 1000, 1),  # type: ignore[attr-defined]
            "top_tottime": by_tot, "top_cumtime": by_cum}


def _short(file: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# --------------------------------------------------------------------------- report

def summary(runs: list[dict], key: str) -> dict:
    vals = [r[key] for r in runs]
    n = runs[0]["n"]
    return {"median_ms": round(statistics.median(vals), 2), "min_ms": round(min(vals), 2),
            "max_ms": round(max(vals), 2),
            "median_ms_per_container": round(statistics.median(vals) / n, 3),
            "min_ms_per_container": round(min(vals) / n, 3),
            "max_ms_per_container": round(max(vals) / n, 3)}


def environment() -> dict:
    import pyroute2
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "pyroute2": getattr(pyroute2, "__version__", "?"),
            "iproute2": sh("ip", "-V").strip(),
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def print_table(result: dict) -> None:
    env = result["environment"]
    print(f"nsbox bridge-mode bring-up/teardown  (kernel {env['kernel']}, {env['cpus']} CPUs, "
          f"pyroute2 {env['pyroute2']}, {env['iproute2']}, load {' '.join(env['loadavg_at_start'])})")
    print(f"repeat={result['repeat']}, median [min..max] over repeats; ms per container = total / N\n")
    hdr = f"{'variant':<16}{'N':>6}  {'bring-up ms/ctr':>24}  {'teardown ms/ctr':>24}  {'bring-up total ms':>18}  {'nsbox/ip-batch (up, down)':>26}"
    print(hdr)
    print("-" * len(hdr))
    base = result["variants"].get("ip-batch")
    for name, v in result["variants"].items():
        up, down = v["bring_up"], v["teardown"]
        ratio = ""
        if name == "nsbox" and base:
            ratio = f"{result['ratio_nsbox_over_ip_batch']['bring_up']:.2f}x, {result['ratio_nsbox_over_ip_batch']['teardown']:.2f}x"
        def cell(s: dict) -> str:
            return f"{s['median_ms_per_container']:.3f} [{s['min_ms_per_container']:.3f}..{s['max_ms_per_container']:.3f}]"
        print(f"{name:<16}{v['n']:>6}  {cell(up):>24}  {cell(down):>24}  {up['median_ms']:>18.1f}  {ratio:>26}")
    m = result["variants"]["nsbox"]["model"]
    print(f"\nnsbox model (not in bring-up): recipe load {m['load_ms']:.1f} ms + build {m['build_ms']:.1f} ms "
          f"+ validate {m['validate_ms']:.1f} ms = {m['model_ms']:.1f} ms (median)")
    t = result["target"]
    print(f"target: nsbox bring-up <= {t['ms_per_container']} ms/container at N={result['containers']}: "
          f"{'MET' if t['met'] else 'MISSED'} ({t['measured']:.3f})")
    print("bring-up CPU per container, user / sys ms (median; incl. child processes): "
          + ", ".join(f"{k} {statistics.median(r['up_user_ms'] for r in v['runs']) / v['n']:.2f}"
                      f" / {statistics.median(r['up_sys_ms'] for r in v['runs']) / v['n']:.2f}"
                      for k, v in result["variants"].items()))
    print("kernel frees deleted namespaces asynchronously; teardown times are until the calls return. "
          "Settle (time until the CPU went idle again after teardown, median ms): "
          + ", ".join(f"{k} {statistics.median(r['settle_ms'] for r in v['runs']):.0f}"
                      for k, v in result["variants"].items()))
    p = result.get("profile")
    if p:
        print(f"\nrealize() step times at N={p['n']} (inclusive, nested; total {p['instrumented_total_ms']} ms):")
        for r in p["phases"]:
            print(f"  {r['ms']:>9.1f} ms  {r['ms_per_container']:>7.3f} ms/ctr  {r['calls']:>6} calls  {r['step']}")
        print(f"\ncProfile of realize() at N={p['n']} (total {p['cprofile_total_ms']} ms with profiler overhead), top by tottime:")
        for r in p["top_tottime"]:
            print(f"  {r['tottime_ms']:>8.1f} ms tot {r['cumtime_ms']:>8.1f} ms cum {r['calls']:>7}  {r['func']}")
        print("top by cumtime:")
        for r in p["top_cumtime"]:
            print(f"  {r['cumtime_ms']:>8.1f} ms cum {r['tottime_ms']:>8.1f} ms tot {r['calls']:>7}  {r['func']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=200, help="N for nsbox and ip-batch (2..1000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant; the median is reported")
    ap.add_argument("--naive", type=int, default=20, metavar="N", help="N for the naive pyroute2 variant (0: skip)")
    ap.add_argument("--profile", action="store_true", help="also break down and cProfile one nsbox realize()")
    ap.add_argument("--top", type=int, default=20, help="rows of cProfile output")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    if not 2 <= args.containers <= 1000 or args.repeat < 1 or args.naive < 0 or 0 < args.naive < 2:
        ap.error("--containers must be 2..1000, --repeat >= 1, --naive 0 or >= 2")

    if os.environ.get(INSIDE_ENV) != "1":
        reexec_in_sandbox()
    mount_private_run()                  # before anything else touches /run
    sys.path.insert(0, str(REPO))

    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    n = args.containers
    env = environment()
    # Warm-up: imports, recipe discovery, first netlink sockets, iptc/libxtables, ip binary.
    run_nsbox(WARMUP_N)
    run_ip_batch(WARMUP_N)
    if args.naive:
        run_naive(WARMUP_N)

    runs: dict[str, list[dict]] = {"nsbox": [], "ip-batch": [], "pyroute2-naive": []}
    for r in range(args.repeat):         # interleaved, so drift hits every variant alike
        log(f"[{r + 1}/{args.repeat}] nsbox N={n}")
        runs["nsbox"].append(run_nsbox(n))
        log(f"[{r + 1}/{args.repeat}] ip-batch N={n}")
        runs["ip-batch"].append(run_ip_batch(n))
        if args.naive:
            log(f"[{r + 1}/{args.repeat}] pyroute2-naive N={args.naive}")
            runs["pyroute2-naive"].append(run_naive(args.naive))

    variants = {}
    for name, rs in runs.items():
        if not rs:
            continue
        variants[name] = {"n": rs[0]["n"], "bring_up": summary(rs, "up_ms"), "teardown": summary(rs, "down_ms"),
                          "runs": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in x.items()} for x in rs]}
    variants["nsbox"]["model"] = {k: round(statistics.median(x[k] for x in runs["nsbox"]), 2)
                                  for k in ("load_ms", "build_ms", "validate_ms", "model_ms")}
    nb, ib = variants["nsbox"], variants["ip-batch"]
    result = {
        "benchmark": "bridge-mode bring-up/teardown", "containers": n, "repeat": args.repeat,
        "environment": env,
        "variants": variants,
        "ratio_nsbox_over_ip_batch": {
            "bring_up": round(nb["bring_up"]["median_ms"] / ib["bring_up"]["median_ms"], 3),
            "teardown": round(nb["teardown"]["median_ms"] / ib["teardown"]["median_ms"], 3)},
        "target": {"ms_per_container": TARGET_MS, "measured": nb["bring_up"]["median_ms_per_container"],
                   "met": nb["bring_up"]["median_ms_per_container"] <= TARGET_MS},
    }
    if args.profile:
        log(f"profiling nsbox realize N={n}")
        result["profile"] = profile_nsbox(n, args.top)
    assert_clean("end of benchmark")

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
