#!/usr/bin/env python3
"""Speed as a user waits for it: every figure of issue 15 from one run, each beside a
same-work baseline measured in the same run, and the ratio.

    /opt/nsbox/venv/bin/python bench/bench_speed.py [--quick] [--repeat 5] [--sizes 100,500,1000,2000]
                                                    [--probe-nodes 50] [--profile] [--json]

Figures (medians of interleaved, paired runs; run as root from the checkout):

  end to end    `nsbox run bridge-mode` (all 11 checks proven, both denies by their rules'
                counters: checked in its JSON) vs `python3 -c pass`
  start-up      `nsbox --help`, `nsbox list` vs `python3 -c pass`
  run --all     `nsbox run --all` (target 4 s)
  probes        all-pairs TCP probes at 50 nodes (bench/recipes/probe_bench.py): the verifier's
                rate vs bench/probe_loop.py, a plain Python socket loop with setns, run in
                the same live lab through --then
  bring-up      bridge-mode with N containers: nsbox realize() vs a baseline generated from
                the build plan (nsbox/plan/steps.py): the same links, addresses, routes,
                sysctls and iptables/ip6tables restores, typed as `ip -batch`, `sysctl -p`
                and `*tables-restore` run through `nsenter --net` (never `ip netns exec`,
                which copies every namespace's mounts: O(N^2))
  teardown      nsbox Realized.teardown() vs one `ip -batch` of `netns del`
  memory        peak memory of each variant's whole process tree, kernel objects included,
                from a memory cgroup of its own (v1 max_usage_in_bytes or v2 memory.peak)
  growth        bring-up / teardown / memory per container for each N
  profile       (--profile) cProfile of one nsbox bring-up at the largest N

Every variant runs in a sandbox of its own (unshare --user --map-root-user --mount --net
--pid, a private /run): nothing reaches the real host. Between runs the script waits
until the kernel has freed the namespaces: the net_namespace slab count in
/proc/slabinfo back where it was (settle()), not an idle-CPU guess.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
now = time.perf_counter
SANDBOX = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child",
           "--mount-proc"]
TARGETS = {"e2e": 6.0, "help": 2.0, "list": 2.0, "all_s": 4.0, "probes": 1.0, "up": 0.5, "mem": 1.1, "down": 1.0}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- kernel signals

def netns_slab() -> int | None:
    """Live net_namespace objects: the kernel's own count of namespaces not yet freed
    (cleanup_net runs on a workqueue after the last reference). SLUB counts every object
    of a per-CPU slab as active, so after a burst the plain count stays tens above the
    truth; writing to the cache's `shrink` first flushes those slabs (root only)."""
    try:
        with open("/sys/kernel/slab/net_namespace/shrink", "w") as f:
            f.write("1")
    except OSError:
        pass
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def settle(baseline: int | None, cap: float = 60.0) -> float:
    """Wait until the kernel has freed what the last run made: the net_namespace count
    back to BASELINE (other users' namespaces may come and go: a small slack). A run
    started while the kernel still frees the last one's thousand namespaces pays for
    them (teardown 8x slower when this ended early). Returns ms waited."""
    t0 = now()
    if baseline is None:
        return 0.0
    while now() - t0 < cap:
        n = netns_slab()
        if n is None or n <= baseline + 2:
            break
        time.sleep(0.02)
    return (now() - t0) * 1000


# --------------------------------------------------------------------------- memory cgroups

class Cgroup:
    """A memory cgroup of our own for one child tree: its peak usage, kernel memory included."""

    def __init__(self, name: str) -> None:
        self.path = None
        self.v2 = False
        for line in open("/proc/self/cgroup"):
            hid, ctrls, rel = line.rstrip("\n").split(":", 2)
            if "memory" in ctrls.split(",") and os.path.isdir("/sys/fs/cgroup/memory"):
                base = f"/sys/fs/cgroup/memory{rel}"
            elif hid == "0" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                base, self.v2 = f"/sys/fs/cgroup{rel}", True
            else:
                continue
            try:
                path = os.path.join(base, name)
                os.mkdir(path)
                self.path = path
                break
            except OSError:
                continue

    def preexec(self) -> None:
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def peak(self) -> int | None:
        if not self.path:
            return None
        f = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int(open(os.path.join(self.path, f)).read())
        except OSError:
            return None

    def remove(self) -> None:
        if self.path:
            for _ in range(100):
                try:
                    os.rmdir(self.path)
                    return
                except OSError:
                    time.sleep(0.05)


# --------------------------------------------------------------------------- user-visible commands

CPU: list[float] = []  # CPU seconds (user + sys, the whole process tree) of the last timed() runs


def timed(argv: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time and the result; the tree's CPU time (rusage of the waited-for child, which
    includes what it waited for) goes to CPU: on a shared machine the steadier figure."""
    t0 = now()
    before = os.times()
    cp = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    after = os.times()
    CPU.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    return now() - t0, cp


def nsbox(*args: str) -> list[str]:
    return [PY, "-m", "nsbox", *args]


def check_bridge_mode(cp: subprocess.CompletedProcess) -> None:
    """The run proved all 11 checks, both denies by their rules' counters."""
    r = json.loads(cp.stdout)["results"][0]
    denies = [c for c in r["checks"] if c["expected"].startswith("deny")]
    ok = (cp.returncode == 0 and len(r["checks"]) == 11 and all(c["passed"] for c in r["checks"])
          and len(denies) == 2 and all(c["observed"].startswith("deny, dropped by host ") for c in denies))
    if not ok:
        sys.exit(f"bench_speed: nsbox run bridge-mode did not prove its 11 checks:\n{cp.stdout[-3000:]}\n{cp.stderr}")


def user_figures(repeat: int, all_repeat: int) -> dict:
    # The interpreter nsbox runs on (a PATH python3 may be a pyenv shell shim: ~0.4 s).
    cmds = {"pass": [PY, "-c", "pass"],
            "e2e": nsbox("run", "bridge-mode", "--format", "json"),
            "help": nsbox("--help"),
            "list": nsbox("list")}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    base = netns_slab()
    for k, argv in cmds.items():  # warm the page cache
        subprocess.run(argv, cwd=REPO, capture_output=True)
    for r in range(repeat):
        log(f"[user {r + 1}/{repeat}] python3 -c pass, nsbox run bridge-mode, --help, list")
        for k, argv in cmds.items():
            settle(base)  # the last run's namespaces freed: the kernel's cleanup must not bill the next
            dt, cp = timed(argv)
            cpu[k].append(CPU[-1])
            if k == "e2e":
                check_bridge_mode(cp)
            elif cp.returncode != 0:
                sys.exit(f"bench_speed: {' '.join(argv)} failed:\n{cp.stderr}")
            times[k].append(dt)
    all_s = []
    for r in range(all_repeat):
        log(f"[user] nsbox run --all ({r + 1}/{all_repeat})")
        settle(base)
        dt, cp = timed(nsbox("run", "--all", "--format", "json"))
        if cp.returncode not in (0, 4):
            sys.exit(f"bench_speed: nsbox run --all failed ({cp.returncode}):\n{cp.stdout[-3000:]}\n{cp.stderr[-2000:]}")
        summary = json.loads(cp.stdout)["summary"]
        all_s.append(dt)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cmed = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
    log("[user] where bridge-mode's time goes (phases)")
    profile = e2e_profile(repeat, med["e2e"], med["pass"])
    recipes = sorted(((r["recipe"], r["duration_s"]) for r in json.loads(cp.stdout)["results"]),
                     key=lambda x: -x[1])
    return {"e2e_profile": profile, "run_all_recipes_s": round(sum(d for _, d in recipes), 2),
            "run_all_slowest": [(n, round(d, 2)) for n, d in recipes[:5]],
            "ms": {k: round(v, 1) for k, v in med.items()},
            "ratio_to_python": {k: round(med[k] / med["pass"], 2) for k in ("e2e", "help", "list")},
            "cpu_ms": {k: round(v, 1) for k, v in cmed.items()},
            "cpu_ratio_to_python": {k: round(cmed[k] / cmed["pass"], 2) for k in ("e2e", "help", "list")},
            "run_all_s": round(statistics.median(all_s), 2), "run_all_summary": summary,
            "runs_ms": {k: [round(x * 1000, 1) for x in v] for k, v in times.items()}}


def probe_figures(nodes: int, repeat: int) -> dict:
    rates, loops = [], []
    base = netns_slab()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loop"
        for r in range(repeat):
            settle(base)
            log(f"[probes {r + 1}/{repeat}] {nodes} nodes, all pairs")
            then = f"{shlex.quote(PY)} {shlex.quote(str(HERE / 'probe_loop.py'))} {nodes} {shlex.quote(str(out))}"
            dt, cp = timed(nsbox("run", "probe-bench", "--recipes", str(HERE / "recipes"), "--set", f"nodes={nodes}",
                                 "--format", "json", "--then", then))
            if cp.returncode != 0:
                sys.exit(f"bench_speed: probe-bench failed ({cp.returncode}):\n{cp.stderr[-2000:]}")
            res = json.loads(cp.stdout)["results"][0]
            ok, secs = out.read_text().split()
            if int(ok) != nodes * (nodes - 1):
                sys.exit(f"bench_speed: the plain loop got {ok} of {nodes * (nodes - 1)} echoes")
            rates.append(len(res["checks"]) / (res["verify_ms"] / 1000))
            loops.append(int(ok) / float(secs))
    ratios = [a / b for a, b in zip(rates, loops)]
    return {"nodes": nodes, "probes": nodes * (nodes - 1), "nsbox_per_s": round(statistics.median(rates)),
            "loop_per_s": round(statistics.median(loops)), "ratio": round(statistics.median(ratios), 2),
            "runs": [[round(a), round(b)] for a, b in zip(rates, loops)]}


# --------------------------------------------------------------------------- bring-up: nsbox and its plan's baseline

def baseline_script(n: int, d: Path, flavour: str) -> Path:
    """bridge-mode's build plan as the commands a person would type: one `ip -batch` of
    `netns add`, then for each run of same-node steps one `nsenter --net=… ip -batch`
    (or `sysctl -e -q -p`, or `{ip,ip6}tables-restore`), in the plan's order; teardown one
    `ip -batch` of `netns del`. Writes its three timestamps (ns) to d/times."""
    sys.path.insert(0, str(REPO))
    from nsbox import recipe
    from nsbox.host.programs import program
    from nsbox.kinds.firewalls import xtables as iptables
    from nsbox.plan.steps import Firewall, Netlink, Netns, Sysctl, plan_lab
    from nsbox.validate import validate

    lab = recipe.get("bridge-mode").build({"containers": str(n)})
    validate(lab)
    plan = plan_lab(lab)
    nodes = [s.node for s in plan.steps if isinstance(s.action, Netns)]
    (d / "add.batch").write_text("".join(f"netns add {x}\n" for x in nodes))
    (d / "del.batch").write_text("".join(f"netns del {x}\n" for x in nodes))
    lines = ["set -e", "mount -t tmpfs -o mode=755 tmpfs /run", "t0=$(date +%s%N)", f"ip -batch {d}/add.batch"]
    groups: list[tuple[str, str, list]] = []
    for s in plan.steps:
        kind = type(s.action).__name__
        if isinstance(s.action, Netns):
            continue
        if groups and groups[-1][:2] == (s.node, kind) and kind != "Firewall":
            groups[-1][2].append(s)
        else:
            groups.append((s.node, kind, [s]))
    for i, (node, kind, steps) in enumerate(groups):
        enter = f"nsenter --net=/run/netns/{node}"
        if kind == "Netlink":
            ip = [ln[3:] for s in steps for ln in s.text.splitlines() if ln.startswith("ip ")]
            br = [ln[7:] for s in steps for ln in s.text.splitlines() if ln.startswith("bridge ")]
            if ip:
                (d / f"{i}.ip").write_text("\n".join(ip) + "\n")
                lines.append(f"{enter} ip -batch {d}/{i}.ip")
            if br:
                (d / f"{i}.bridge").write_text("\n".join(br) + "\n")
                lines.append(f"{enter} bridge -batch {d}/{i}.bridge")
        elif kind == "Sysctl":
            # Both variants run in a user-namespace sandbox, where nsbox (as moby) leaves out
            # ping_group_range (the kernel refuses it there); this plan was made outside it.
            steps = [s for s in steps if s.action.key != "net.ipv4.ping_group_range"]
            if not steps:
                continue
            (d / f"{i}.sysctl").write_text("".join(f"{s.action.key} = {s.action.value}\n" for s in steps))
            lines.append(f"{enter} sysctl -e -q -p {d}/{i}.sysctl")
        elif kind == "Firewall":
            fw = steps[0].action.firewall
            for family in (4, 6):
                text = iptables.restore_text(fw, family)
                if text == "\n":
                    continue
                prog = program(family, flavour, "restore")
                # In a sandbox one nf_tables batch is capped (~1,000 rules; see kinds/firewalls/_xtables.py):
                # then chains first and rules in --noflush chunks, as nsbox does.
                chunks = ([(text, [])] if text.count("\n-A ") <= iptables.RESTORE_CHUNK
                          else iptables.restore_chunks(fw, family))
                for k, (chunk, flags) in enumerate(chunks):
                    (d / f"{i}.rules{family}.{k}").write_text(chunk)
                    lines.append(f"{enter} {prog} {' '.join(flags)} < {d}/{i}.rules{family}.{k}")
    lines += ["t1=$(date +%s%N)", f"test $(ls /run/netns | wc -l) -eq {len(nodes)}",
              f"ip -batch {d}/del.batch", "t2=$(date +%s%N)", f"echo $t0 $t1 $t2 > {d}/times"]
    script = d / "build.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def inner_nsbox(n: int, out: str, profile: bool) -> None:
    """Inside a sandbox: realize bridge-mode with N containers, tear it down; times to OUT."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755") != 0:
        sys.exit("bench_speed: cannot mount /run in the sandbox")
    sys.path.insert(0, str(REPO))
    from nsbox import recipe
    from nsbox.kernel import realize
    from nsbox.validate import validate

    lab = recipe.get("bridge-mode").build({"containers": str(n)})
    validate(lab)
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t0 = now()
    built = realize.realize(lab)
    t1 = now()
    if prof:
        prof.disable()
    if len(os.listdir("/run/netns")) != len(lab.nodes):
        sys.exit("bench_speed: nsbox built the wrong number of namespaces")
    t2 = now()
    problems = built.teardown()
    t3 = now()
    if problems or os.listdir("/run/netns"):
        sys.exit(f"bench_speed: nsbox teardown left {problems or os.listdir('/run/netns')}")
    data = {"up_ms": (t1 - t0) * 1000, "down_ms": (t3 - t2) * 1000}
    if prof:
        import io
        import pstats
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        data["profile"] = s.getvalue()
    Path(out).write_text(json.dumps(data))


def inner_phases(out: str) -> None:
    """Inside a sandbox: `nsbox run bridge-mode`'s work, phase by phase, as the sandboxed
    nsbox does it (cli.load_entries, the checks before the build, runner.run_lab)."""
    t0 = now()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, b"mode=755") != 0:
        sys.exit("bench_speed: cannot mount /run in the sandbox")
    sys.path.insert(0, str(REPO))
    import nsbox.cli as cli
    t1 = now()
    labs = cli.load_entries(("bridge-mode",), {}, ())
    t2 = now()
    labs = cli._refuse_what_the_kernel_would(labs, meanwhile=cli._run_imports)  # as run_cmd does
    cli._import_what_labs_need(labs)
    from nsbox.runner import RunOptions, run_lab
    t3 = now()
    result = run_lab(labs[0], RunOptions())
    t4 = now()
    if result.status != "pass":
        sys.exit(f"bench_speed: bridge-mode did not pass in the phase run: {result.status}")
    Path(out).write_text(json.dumps({
        "imports": (t1 - t0) * 1000, "load": (t2 - t1) * 1000, "checks": (t3 - t2) * 1000,
        "build": result.build_ms, "verify": result.verify_ms, "teardown": result.teardown_ms,
        "run_other": (t4 - t3) * 1000 - result.build_ms - result.verify_ms - result.teardown_ms}))


PHASES = [("imports", "nsbox's command-line imports (cli, click)"),
          ("load", "recipe file run (model, kit imports) + lab validated"),
          ("checks", "before the build: features, sysctls, iptables --test (run's imports meanwhile)"),
          ("build", "build: namespaces, links, sysctls, rules"),
          ("verify", "verify: servers, 11 checks (2 denies by counters)"),
          ("teardown", "teardown"),
          ("run_other", "features again, hints, result")]


def e2e_profile(repeat: int, e2e_ms: float, pass_ms: float) -> list[tuple[str, float]]:
    """Where `nsbox run bridge-mode`'s wall time goes: the sandboxed work phase by phase
    (medians of REPEAT runs of inner_phases), the interpreter start, and the rest
    (the supervisor: command line, sandbox, report, exit)."""
    runs = []
    with tempfile.TemporaryDirectory() as t:
        for _ in range(repeat):
            out = Path(t) / "phases.json"
            cp = subprocess.run([*SANDBOX, PY, str(Path(__file__).resolve()), "--inner-phases", str(out)],
                                capture_output=True, text=True)
            if cp.returncode != 0:
                sys.exit(f"bench_speed: phase run failed: {cp.stderr[-2000:]}")
            runs.append(json.loads(out.read_text()))
    rows = [("interpreter start (python -c pass)", pass_ms)]
    rows += [(label, statistics.median(r[key] for r in runs)) for key, label in PHASES]
    rows.append(("the rest: supervisor, fork into the sandbox, report, exit", e2e_ms - sum(ms for _, ms in rows)))
    return [(label, round(ms, 1)) for label, ms in rows]


def build_once(variant: str, n: int, tmp: Path, flavour: str, profile: bool = False) -> dict:
    cg = Cgroup(f"nsbox-bench-{os.getpid()}-{variant}-{n}")
    out = tmp / f"{variant}-{n}.json"
    if variant == "nsbox":
        argv = [*SANDBOX, PY, str(Path(__file__).resolve()), "--inner", str(n), str(out)]
        if profile:
            argv.append("--profile")
    else:
        d = tmp / f"plan-{n}"
        argv = [*SANDBOX, "sh", str(d / "build.sh")]
    cp = subprocess.run(argv, capture_output=True, text=True, preexec_fn=cg.preexec)
    peak = cg.peak()
    cg.remove()
    if cp.returncode != 0:
        sys.exit(f"bench_speed: {variant} N={n} failed ({cp.returncode}): {cp.stderr[-2000:]}")
    if variant == "nsbox":
        data = json.loads(out.read_text())
    else:
        t0, t1, t2 = (int(x) for x in (tmp / f"plan-{n}" / "times").read_text().split())
        data = {"up_ms": (t1 - t0) / 1e6, "down_ms": (t2 - t1) / 1e6}
    data["peak_mib"] = peak / 2**20 if peak else None
    return data


def build_figures(sizes: list[int], repeat: int, profile: bool) -> dict:
    sys.path.insert(0, str(REPO))
    from nsbox.host.programs import resolve_flavour

    flavour = resolve_flavour("auto")
    rows = []
    with tempfile.TemporaryDirectory(prefix="nsbox-bench-") as t:
        tmp = Path(t)
        base_slab = netns_slab()
        for n in sizes:
            (tmp / f"plan-{n}").mkdir()
            baseline_script(n, tmp / f"plan-{n}", flavour)
            runs: dict[str, list[dict]] = {"nsbox": [], "plan": []}
            settled = []
            for r in range(repeat):
                for variant in ("nsbox", "plan"):  # interleaved: drift hits both alike
                    log(f"[bring-up N={n} {r + 1}/{repeat}] {variant}")
                    runs[variant].append(build_once(variant, n, tmp, flavour))
                    settled.append(settle(base_slab))
            med = {v: {k: statistics.median(x[k] for x in rs if x.get(k) is not None)
                       for k in ("up_ms", "down_ms", "peak_mib") if any(x.get(k) is not None for x in rs)}
                   for v, rs in runs.items()}
            row = {"n": n, "nsbox": {k: round(x, 1) for k, x in med["nsbox"].items()},
                   "plan": {k: round(x, 1) for k, x in med["plan"].items()},
                   "up_ms_per_container": round(med["nsbox"]["up_ms"] / n, 3),
                   "ratio_up": round(med["nsbox"]["up_ms"] / med["plan"]["up_ms"], 2),
                   "ratio_down": round(med["nsbox"]["down_ms"] / med["plan"]["down_ms"], 2),
                   "settle_ms_median": round(statistics.median(settled))}
            if "peak_mib" in med["nsbox"] and "peak_mib" in med["plan"]:
                row["ratio_mem"] = round(med["nsbox"]["peak_mib"] / med["plan"]["peak_mib"], 2)
            rows.append(row)
        cg = Cgroup(f"nsbox-bench-{os.getpid()}-python")
        subprocess.run([*SANDBOX, PY, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                        "import nsbox.kernel.realize, nsbox.recipe, nsbox.validate; "
                        "nsbox.recipe.get('bridge-mode')"], capture_output=True, preexec_fn=cg.preexec)
        python_peak = cg.peak()
        cg.remove()
        prof = None
        if profile:
            log(f"[profile] nsbox bring-up N={sizes[-1]}")
            prof = build_once("nsbox", sizes[-1], tmp, flavour, profile=True).get("profile")
            settle(base_slab)
    return {"flavour": flavour, "rows": rows, "profile": prof,
            "python_mib": round(python_peak / 2**20, 1) if python_peak else None}


# --------------------------------------------------------------------------- report

def verdict(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "MISSED"


def print_report(res: dict) -> None:
    env = res["environment"]
    print(f"nsbox speed benchmark  {env['date']}  kernel {env['kernel']}, {env['cpus']} CPUs, "
          f"python {env['python']}, load at start {env['load']}")
    print(f"command: {env['command']}")
    print(f"python3 -c pass = {PY} -c pass (the interpreter nsbox runs on)\n")
    u = res.get("user")
    if u:
        ms, rt = u["ms"], u["ratio_to_python"]
        print(f"{'figure':<44}{'nsbox':>12}{'baseline':>14}{'ratio':>8}   target")
        print(f"{'nsbox run bridge-mode (11 checks proven)':<44}{ms['e2e']:>10.0f}ms{ms['pass']:>12.0f}ms"
              f"{rt['e2e']:>7.1f}x   <= {TARGETS['e2e']:g}x python3 -c pass: {verdict(rt['e2e'], TARGETS['e2e'])}")
        print(f"{'nsbox --help':<44}{ms['help']:>10.0f}ms{ms['pass']:>12.0f}ms{rt['help']:>7.1f}x   "
              f"<= {TARGETS['help']:g}x: {verdict(rt['help'], TARGETS['help'])}")
        print(f"{'nsbox list':<44}{ms['list']:>10.0f}ms{ms['pass']:>12.0f}ms{rt['list']:>7.1f}x   "
              f"<= {TARGETS['list']:g}x: {verdict(rt['list'], TARGETS['list'])}")
        cm, cr = u["cpu_ms"], u["cpu_ratio_to_python"]
        print(f"{'  CPU time (user+sys, whole tree): run':<44}{cm['e2e']:>10.0f}ms{cm['pass']:>12.0f}ms{cr['e2e']:>7.1f}x")
        print(f"{'  CPU time: --help / list':<44}{cm['help']:>6.0f}/{cm['list']:.0f}ms{cm['pass']:>12.0f}ms"
              f"{cr['help']:>4.1f}/{cr['list']:.1f}x")
        print(f"{'nsbox run --all':<44}{u['run_all_s']:>11.2f}s{'':>14}{'':>8}   <= {TARGETS['all_s']:g} s: "
              f"{verdict(u['run_all_s'], TARGETS['all_s'])}  ({u['run_all_summary']})")
        if verdict(rt["e2e"], TARGETS["e2e"]) == "MISSED":
            print(f"\n  where `nsbox run bridge-mode`'s {ms['e2e']:.0f} ms go (target {TARGETS['e2e'] * ms['pass']:.0f} ms):")
            for label, t in u["e2e_profile"]:
                print(f"    {t:>7.1f} ms  {label}")
        if verdict(u["run_all_s"], TARGETS["all_s"]) == "MISSED":
            print(f"\n  `nsbox run --all`: {u['run_all_recipes_s']:.2f} s in the recipes themselves (sum of their "
                  f"durations), the rest loading and checking all of them first; slowest: "
                  + ", ".join(f"{n} {d:.2f} s" for n, d in u["run_all_slowest"]))
        print()
    p = res.get("probes")
    if p:
        print(f"{'all-pairs TCP probes, ' + str(p['nodes']) + ' nodes (probes/s)':<44}{p['nsbox_per_s']:>12}"
              f"{p['loop_per_s']:>14}{p['ratio']:>7.2f}x   >= 1.0x a plain setns socket loop: "
              f"{verdict(p['ratio'], TARGETS['probes'], True)}")
    b = res.get("build")
    if b:
        print(f"\nbring-up / teardown / peak memory, bridge-mode with N containers ({b['flavour']} iptables); "
              f"baseline = the build plan as ip -batch / sysctl -p / restore via nsenter; teardown baseline = "
              f"ip -batch of netns del")
        print(f"{'N':>6}{'up ms':>10}{'plan ms':>10}{'ratio':>7}{'ms/ctr':>8}{'down ms':>10}{'del ms':>9}"
              f"{'ratio':>7}{'MiB':>8}{'plan MiB':>10}{'ratio':>7}{'settle ms':>11}")
        for r in b["rows"]:
            nb, pl = r["nsbox"], r["plan"]
            print(f"{r['n']:>6}{nb['up_ms']:>10.0f}{pl['up_ms']:>10.0f}{r['ratio_up']:>7.2f}{r['up_ms_per_container']:>8.2f}"
                  f"{nb['down_ms']:>10.0f}{pl['down_ms']:>9.0f}{r['ratio_down']:>7.2f}"
                  f"{nb.get('peak_mib', 0):>8.0f}{pl.get('peak_mib', 0):>10.0f}{r.get('ratio_mem', 0):>7.2f}"
                  f"{r['settle_ms_median']:>11}")
        big = max(b["rows"], key=lambda r: r["n"])
        print(f"targets at N={big['n']}: bring-up <= {TARGETS['up']:g}x: {verdict(big['ratio_up'], TARGETS['up'])}; "
              f"peak memory <= {TARGETS['mem']:g}x: {verdict(big.get('ratio_mem'), TARGETS['mem'])}; "
              f"teardown <= {TARGETS['down']:g}x: {verdict(big['ratio_down'], TARGETS['down'])}")
        if verdict(big["ratio_down"], TARGETS["down"]) == "MISSED":
            nb, pl = big["nsbox"], big["plan"]
            print(f"  teardown at N={big['n']}: {nb['down_ms'] / big['n']:.2f} ms per namespace against "
                  f"{pl['down_ms'] / big['n']:.2f} for `ip netns del`: the same unmount and unlink, plus nsbox's "
                  f"checks that the path is still its recorded nsfs pin with nothing mounted on it (safe on a "
                  f"shared host); settle waited {big['settle_ms_median'] / 1000:.0f} s"
                  + (" (its cap: the kernel was still freeing earlier runs' namespaces)"
                     if big["settle_ms_median"] >= 29000 else ""))
        if verdict(big.get("ratio_mem"), TARGETS["mem"]) == "MISSED" and b.get("python_mib"):
            extra = big["nsbox"].get("peak_mib", 0) - big["plan"].get("peak_mib", 0)
            print(f"  memory at N={big['n']}: nsbox's tree peaks {extra:.0f} MiB above the plan's; the Python "
                  f"interpreter with nsbox's modules loaded (a sandboxed `python -c 'import ...'`) is "
                  f"{b['python_mib']:.0f} MiB of it, which the shell baseline does not carry")
        if b.get("profile"):
            print(f"\nprofile of one nsbox bring-up at N={big['n']} (cProfile, top by own time):")
            print(b["profile"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N and few repeats (a minute or two)")
    ap.add_argument("--repeat", type=int, default=None, help="paired runs per figure (default 5; quick 3)")
    ap.add_argument("--sizes", default=None, help="container counts for bring-up (default 100,500,1000,2000)")
    ap.add_argument("--probe-nodes", type=int, default=50)
    ap.add_argument("--only", default="user,probes,build", help="which parts: user, probes, build")
    ap.add_argument("--profile", action="store_true", help="cProfile one nsbox bring-up at the largest N")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--inner-phases", metavar="OUT", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner_phases:
        inner_phases(a.inner_phases)
        return 0
    if a.inner:
        inner_nsbox(int(a.inner[0]), a.inner[1], a.profile)
        return 0
    if os.geteuid() != 0:
        sys.exit("bench_speed: run as root (it reads /proc/slabinfo and makes memory cgroups)")
    # Byte code as an install has it (pip compiles at install time): with PYTHONDONTWRITEBYTECODE
    # set, a checkout's changed modules would be compiled again in every timed start-up.
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "nsbox"), str(REPO / "recipes")],
                   capture_output=True)
    repeat = a.repeat or (3 if a.quick else 5)
    sizes = [int(x) for x in (a.sizes or ("50,200" if a.quick else "100,500,1000,2000")).split(",")]
    parts = set(a.only.split(","))
    res: dict = {"environment": {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load": " ".join(open("/proc/loadavg").read().split()[:3]),
        "command": " ".join(shlex.quote(x) for x in [PY, "bench/bench_speed.py", *sys.argv[1:]])}}
    if "user" in parts:
        res["user"] = user_figures(repeat, 1 if a.quick else 3)
    if "probes" in parts:
        res["probes"] = probe_figures(a.probe_nodes, repeat)
    if "build" in parts:
        res["build"] = build_figures(sizes, max(1, repeat // 2 if not a.quick else 1), a.profile)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print_report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
