"""Run one recipe end to end through one LabSession (nsbox/session.py): features, build, serve, verify, --then, tear down."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from nsbox import tools
from nsbox.errors import KernelError
from nsbox.kernel.realize import Realized
from nsbox.model import Lab
from nsbox.session import LabSession
from nsbox.verify.matrix import tables as matrix_tables
from nsbox.verify.results import RecipeResult
from nsbox.verify.verifier import Timing


@dataclass
class RunOptions:
    on_host: bool = False
    timing: Timing = field(default_factory=Timing)
    then: str | None = None  # shell command run in the host node before teardown
    then_stdout_to_stderr: bool = False
    artifacts_dir: str | None = None  # absolute; failed checks leave state dumps and a capture here
    node_state: bool = False  # with artifacts_dir: every machine's state too, pass or fail
    iptables: str = "auto"  # where rules go: auto (the system's iptables), nft or legacy
    then_in: str = "host"  # the node (or container) whose netns --then runs in
    progress: Callable[[str], None] | None = None  # told each phase (nsbox/progress.py), for a watcher


def _phase(opts: RunOptions, what: str) -> None:
    if opts.progress is not None:
        opts.progress(what)


def run_lab(lab: Lab, opts: RunOptions) -> RecipeResult:
    """LAB through one LabSession (nsbox/session.py), as every front end runs a lab."""
    start = time.monotonic()
    result = RecipeResult(lab.name, "pass", description=lab.description)
    # In the sandbox names can be the real ones; on the host they carry a per-run prefix.
    session = LabSession(lab, on_host=opts.on_host, iptables=opts.iptables, progress=opts.progress)
    lacking = session.lacking()
    if lacking:
        result.status = "skip"
        result.skip_reason = "; ".join(lacking.values())
        result.duration_s = time.monotonic() - start
        return result
    from nsbox.validate_hints import warnings

    for w in warnings(lab):  # the kernel takes it, but the checks cannot pass as written: say why now
        print(f"nsbox: warning: {lab.name}: {w}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    _phase(opts, f"building {len(lab.nodes)} namespaces")
    try:
        built = session.build()
    except KernelError as e:  # realize has already undone what it built
        result.status = "fail"
        result.error = str(e)
        result.duration_s = time.monotonic() - start
        return result
    result.build_ms = round((time.monotonic() - t0) * 1000, 1)
    result.namespaces = built.netns_names()
    result.machines = {m.name: list(m.nodes) for m in lab.machines}
    try:
        session.serve()
        _phase(opts, f"built in {result.build_ms / 1000:.1f} s; verifying {len(lab.checks)} checks")
        t_verify = time.monotonic()
        result.checks = session.verify(opts.timing)
        result.verify_ms = round((time.monotonic() - t_verify) * 1000, 1)
        result.matrices = [matrix_tables(m, result.checks) for m in lab.matrices]
        if opts.artifacts_dir and (opts.node_state or not all(c.passed for c in result.checks)):
            session.artifacts(result, opts.artifacts_dir, opts.timing, opts.node_state)  # the lab is still live
        if opts.then:
            then_start = time.monotonic()
            result.then_status = _run_then(built, result, opts)
            start += time.monotonic() - then_start  # the user's time is not the recipe's
    except KernelError as e:
        result.error = str(e)
    finally:
        _phase(opts, "tearing down")
        t1 = time.monotonic()
        problems = session.teardown()  # servers, then the lab; signals deferred meanwhile
        result.teardown_ms = round((time.monotonic() - t1) * 1000, 1)
        if problems:
            result.error = "teardown: " + "; ".join(problems)
    if result.error or not all(c.passed for c in result.checks):
        result.status = "fail"
    result.duration_s = time.monotonic() - start
    return result


def _run_then(built: Realized, result: RecipeResult, opts: RunOptions) -> int:
    """Let the user (or a test) look at the live lab from inside the host node.

    Returns the command's exit status as a shell reports it (128+N if signal N
    ended it); results.exit_code() passes it through when no check failed."""
    passed = sum(c.passed for c in result.checks)
    lab = built.lab
    where = lab.netns_of(opts.then_in).name
    names = built.netns_names()
    print(f"nsbox: {lab.name}: {passed} of {len(result.checks)} checks passed; the lab is up. "
          f"Running {opts.then!r} in {opts.then_in} (netns {names[where]}; "
          f"'ip netns exec NODE ...' reaches the others). The lab is torn down when it ends.",
          file=sys.stderr, flush=True)
    env = dict(os.environ)
    if tools.really_root():  # tools.sanitize_path() did this for the process; the command gets it too
        env["PATH"] = tools.SAFE_PATH
    # NSBOX_NETNS_<NODE or CONTAINER>: the netns name; NSBOX_MACHINE_<M>: its nodes' netns names
    for node, name in names.items():
        env[_var("NSBOX_NETNS_", node)] = name
    for c in lab.containers.values():
        env[_var("NSBOX_NETNS_", c.name)] = names[c.node]
    for m in lab.machines:
        env[_var("NSBOX_MACHINE_", m.name)] = " ".join(names[n] for n in m.nodes)
    # On the host the command gets a pid namespace of its own, whose unshare dies with
    # nsbox (--pdeathsig) and takes the namespace's every process with it (--kill-child):
    # nothing it starts outlives the lab, even if nsbox is SIGKILLed. In the sandbox the
    # sandbox's own pid namespace already does that (nsbox is its pid 1), so the command
    # stays in it: `ps` and `ss -p` then see the lab's processes (docker-proxy, the
    # containers' servers), as a learner expects; a nested one would show only itself.
    pidns = [tools.need("unshare", "util-linux"), "--pid", "--fork", "--kill-child"] if opts.on_host else []
    # The node as a live lab's node is (nsbox/live/node.py): a process holding its netns,
    # its own hostname (UTS) and /etc/hosts, /etc/resolv.conf (mount namespace); the
    # command enters all three, in the directory the user is in.
    from nsbox.live.holder import start_nodes

    node = start_nodes(lab, built.paths, only=(where,))
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    wd = [f"--wd={cwd}"] if "\n" not in cwd else []
    argv = [tools.need("nsenter", "util-linux"), f"--target={node.procs[where].pid}", "--net", "--uts", "--mount",
            *wd, tools.need("setpriv", "util-linux"), "--pdeathsig", "KILL", *pidns,
            tools.need("sh", "dash"), "-c", opts.then]
    from nsbox.reap import run_to_end  # a signal leaves none of CMD's processes behind

    try:
        rc = run_to_end(argv, env, sys.stderr if opts.then_stdout_to_stderr else None)
    finally:
        node.stop()
    status = rc if rc >= 0 else 128 - rc
    if status != 0:
        print(f"nsbox: --then exited with status {status}", file=sys.stderr)
    return status


def _var(prefix: str, name: str) -> str:
    return prefix + name.upper().replace("-", "_").replace(".", "_")
