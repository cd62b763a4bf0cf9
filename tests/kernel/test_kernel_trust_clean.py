"""`nsbox clean` acts only on proof (issue 12, items 10 and 13).

Each scenario runs in a mount namespace of its own whose /run is a fresh tmpfs
(tests.support.runner.in_private_run): the mounts, files and namespaces are real, but no
other lab on this host can see them, and the kernel frees everything when the
scenario ends. The scenario records what independent tools see
(/proc/self/mountinfo, stat, ls, ip -j netns list); the asserts are here.
"""

from __future__ import annotations

import json
import os
import secrets
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts, network namespaces"),
    pytest.mark.tools("ip", "unshare", "nsenter", "mount", "stat"),
]

PRELUDE = textwrap.dedent('''
    journal() {  # FILE: a journal as root writes one (0600)
        install -m 0600 /dev/stdin /run/nsbox/$1
    }
    mounted() {  # PATH TAG: whether PATH is a mount point here
        awk -v p="$1" '$5 == p {found=1} END {print found ? "mounted" : "not mounted"}' /proc/self/mountinfo > $OUT/$2
    }
''')


def _run(kernel, script: str, out: Path):
    done = kernel.in_private_run(PRELUDE + textwrap.dedent(script), out)
    assert done.returncode == 0, f"scenario failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _read(out: Path, name: str) -> str:
    return (out / name).read_text()


def _prefix() -> str:
    return f"nsb{secrets.token_hex(6)}-"


# --------------------------------------------------------------------------- item 10

def test_clean_unmounts_and_unlinks_only_nsfs_pins(kernel, tmp_path) -> None:
    """A root-written journal names, with their true (dev, inode), a bind mount of an
    ordinary file and an empty file under /run/netns. Neither is a namespace: clean
    leaves the mount mounted and the file in place (it used to unmount the one and
    unlink the other), and says so."""
    p = _prefix()
    _run(kernel, f'''
        mkdir -p /run/netns /run/elsewhere; mkdir -m 0700 /run/nsbox
        echo secret > /run/elsewhere/victim
        touch /run/netns/{p}bound; mount --bind /run/elsewhere/victim /run/netns/{p}bound
        install -m 0444 /dev/null /run/netns/{p}file
        b_ino=$(stat -c %i /run/netns/{p}bound); b_dev=$(stat -c %d /run/netns/{p}bound)
        f_ino=$(stat -c %i /run/netns/{p}file); f_dev=$(stat -c %d /run/netns/{p}file)
        journal {p}lab.journal <<EOF
        {{"kind": "owner", "pid": "999999999", "start": "1", "format": 2}}
        {{"kind": "netns", "path": "/run/netns/{p}bound", "ino": $b_ino, "dev": $b_dev, "pin_ino": $b_ino, "pin_dev": $b_dev}}
        {{"kind": "netns", "path": "/run/netns/{p}file", "ino": $f_ino, "dev": $f_dev, "pin_ino": $f_ino, "pin_dev": $f_dev}}
        EOF
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        mounted /run/netns/{p}bound bound.after
        cat /run/netns/{p}bound > $OUT/bound.content 2>&1 || true
        ls /run/netns > $OUT/netns.after
    ''', tmp_path)
    assert _read(tmp_path, "bound.after").strip() == "mounted", "clean unmounted a bind mount that is no namespace"
    assert _read(tmp_path, "bound.content").strip() == "secret"
    assert f"{p}file" in _read(tmp_path, "netns.after").split(), "clean unlinked a file that is no pin"
    out = _read(tmp_path, "clean.out")
    assert "Traceback" not in out + _read(tmp_path, "clean.err")
    assert f"/run/netns/{p}bound is no longer this lab's namespace" in out, out
    assert f"/run/netns/{p}file is no longer this lab's namespace" in out, out


def test_a_deeply_nested_journal_is_skipped_and_the_rest_cleaned(kernel, tmp_path) -> None:
    """One journal line nested 100000 deep (json.loads raises RecursionError) is
    skipped with one line; the killed lab beside it is still cleaned."""
    _run(kernel, '''
        $NSBOX run bridge-mode --on-host --then 'touch /run/lab-up; sleep 60' > /dev/null 2>&1 &
        pid=$!
        for i in $(seq 600); do [ -e /run/lab-up ] && break; sleep 0.05; done
        kill -9 $pid; wait $pid; rm -f /run/lab-up
        ip -j netns list > $OUT/netns.killed
        python3 -c 'print("[" * 100000 + "]" * 100000)' | journal nsb000000000001-deep.journal
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        ip -j netns list > $OUT/netns.cleaned 2>/dev/null || echo '[]' > $OUT/netns.cleaned
    ''', tmp_path)
    killed = [n["name"] for n in json.loads(_read(tmp_path, "netns.killed") or "[]")]
    assert len([n for n in killed if kernel.ONHOST_NETNS.match(n)]) == 5, killed  # the leftovers are real
    err = _read(tmp_path, "clean.err").splitlines()
    assert len(err) == 1 and err[0].startswith("nsbox: clean: skipping /run/nsbox/nsb000000000001-deep.journal"), err
    assert "nested too deeply" in err[0]
    assert "removing nsb" in _read(tmp_path, "clean.out")
    cleaned = [n["name"] for n in json.loads(_read(tmp_path, "netns.cleaned").strip() or "[]")]
    assert not cleaned, f"the dead lab's namespaces survived clean: {cleaned}"


# --------------------------------------------------------------------------- item 13

def test_clean_from_another_pid_namespace_spares_a_live_lab(kernel, tmp_path) -> None:
    """A live --on-host lab, and `nsbox clean` run in a pid namespace of its own (its
    /proc knows no nsbox process): the journal's lock says the lab lives, so neither
    --dry-run nor a real clean touches it. Once the run is SIGKILLed, the same clean
    from the other pid namespace sees the lock gone and would remove it."""
    _run(kernel, '''
        $NSBOX run bridge-mode --on-host --then 'touch /run/lab-up; sleep 60' > /dev/null 2>&1 &
        pid=$!
        for i in $(seq 600); do [ -e /run/lab-up ] && break; sleep 0.05; done
        ls /run/nsbox > $OUT/journals.live
        unshare --pid --fork --mount-proc $NSBOX clean --dry-run > $OUT/dry.out 2> $OUT/dry.err
        unshare --pid --fork --mount-proc $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err
        ls /run/nsbox > $OUT/journals.after
        ip -j netns list > $OUT/netns.after
        kill -9 $pid; wait $pid
        unshare --pid --fork --mount-proc $NSBOX clean --dry-run > $OUT/dead.out 2> $OUT/dead.err
        $NSBOX clean > /dev/null 2>&1
    ''', tmp_path)
    live = [n for n in _read(tmp_path, "journals.live").split() if n.endswith(".journal")]
    assert len(live) == 1, live
    for name in ("dry", "clean"):
        assert _read(tmp_path, f"{name}.out").strip() == "nothing to clean", (name, _read(tmp_path, f"{name}.out"),
                                                                               _read(tmp_path, f"{name}.err"))
    assert live[0] in _read(tmp_path, "journals.after").split()
    names = [n["name"] for n in json.loads(_read(tmp_path, "netns.after"))]
    assert len([n for n in names if kernel.ONHOST_NETNS.match(n)]) == 5, names
    assert f"would remove {live[0]}" in _read(tmp_path, "dead.out"), _read(tmp_path, "dead.out")
