"""--on-host shares the real host's /run/netns and /run/nsbox with iproute2, other
labs and other users: nsbox may only ever remove what it can prove it made.

Each scenario runs in a mount namespace of its own whose /run is a fresh tmpfs
(tests.support.runner.in_private_run): the namespaces, files and mounts are real, but no
other lab on this host can see them or be hurt by them, /run/netns starts out
missing (the case where `ip netns add` used to mount over nsbox's pins), and
the kernel frees everything when the scenario ends. The scenario only acts and
records what independent tools see (ip -j netns list, readlink of
/proc/self/ns/net via nsenter, stat, /proc/self/mountinfo); the asserts are here.
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
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces, veth pairs and iptables rules"),
    pytest.mark.tools("ip", "unshare", "nsenter", "mount", "stat"),
]

# Record, into $OUT/NAME.*, what independent tools see of the netns NAME.
PRELUDE = textwrap.dedent('''
    observe_netns() {  # NAME TAG: its inode as the namespace itself reports it
        nsenter --net=/run/netns/$1 readlink /proc/self/ns/net > $OUT/$1.$2 2>&1 || echo gone > $OUT/$1.$2
    }
    netns_list() { ip -j netns list > $OUT/netns.$1 2>/dev/null || echo '[]' > $OUT/netns.$1; }
    journal() {  # FILE: a journal as root writes one (0600)
        install -m 0600 /dev/stdin /run/nsbox/$1
    }
''')


def _names(out: Path, tag: str) -> set[str]:
    text = (out / f"netns.{tag}").read_text().strip() or "[]"
    return {n["name"] for n in json.loads(text)}


def _mounts_under(out: Path, tag: str, top: str) -> set[str]:
    """Mount points at or under TOP in $OUT/mountinfo.TAG (field 5 of /proc/self/mountinfo)."""
    points = set()
    for line in (out / f"mountinfo.{tag}").read_text().splitlines():
        point = line.split()[4]
        if point == top or point.startswith(top + "/"):
            points.add(point)
    return points


def _prefix() -> str:
    return f"nsb{secrets.token_hex(6)}-"


def _run(kernel, script: str, out: Path, env: dict[str, str] | None = None):
    done = kernel.in_private_run(PRELUDE + textwrap.dedent(script), out, env)
    assert done.returncode == 0, f"scenario failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _clean_output(out: Path) -> tuple[int, list[str], str]:
    rc = int((out / "clean.rc").read_text())
    return rc, (out / "clean.err").read_text().splitlines(), (out / "clean.out").read_text()


# --------------------------------------------------------------------------- item 4: clean obeys only proof

def test_forged_journals_are_refused_and_nothing_they_name_is_touched(kernel, tmp_path) -> None:
    """Journals naming an unrelated netns, a file, a directory, a bind mount, a netns
    with nsbox's prefix but another inode, or using a symlink, are each reported in
    one line; every object they name survives, unchanged."""
    p = _prefix()
    _run(kernel, f'''
        ip netns add nsbtest-victim
        ip netns add {p}decoy   # a user's netns that merely looks like nsbox's
        echo keep > /run/victim-file; mkdir /run/victim-dir
        mkdir /run/bind-src /run/bind-dst; mount --bind /run/bind-src /run/bind-dst
        observe_netns nsbtest-victim before; observe_netns {p}decoy before
        mkdir -m 0700 /run/nsbox
        dead='"pid": "999999999", "start": "1"'
        # what the previous release wrote: bare paths, a "dir" entry with a marker
        journal nsb000000000001-old.journal <<EOF
        {{"kind": "owner", $dead}}
        {{"kind": "dir", "path": "/run/victim-dir", "marker": "/run/victim-file"}}
        {{"kind": "netns", "path": "/run/netns/nsbtest-victim"}}
        {{"kind": "netns", "path": "/run/bind-dst"}}
        EOF
        pin='"ino": 1, "dev": 1, "pin_ino": 1, "pin_dev": 1'
        journal nsb000000000002-paths.journal <<EOF
        {{"kind": "owner", $dead, "format": 2}}
        {{"kind": "netns", "path": "/run/netns/nsbtest-victim", $pin}}
        EOF
        journal nsb000000000003-escape.journal <<EOF
        {{"kind": "owner", $dead, "format": 2}}
        {{"kind": "netns", "path": "/run/netns/nsb000000000003-../victim-file", $pin}}
        EOF
        journal nsb000000000004-kind.journal <<EOF
        {{"kind": "owner", $dead, "format": 2}}
        {{"kind": "dir", "path": "/run/victim-dir"}}
        EOF
        # well-formed and of the decoy's prefix, but the inodes are not the decoy's
        journal {p}lab.journal <<EOF
        {{"kind": "owner", $dead, "format": 2}}
        {{"kind": "netns", "path": "/run/netns/{p}decoy", $pin}}
        EOF
        cp /run/nsbox/{p}lab.journal /run/elsewhere.journal
        ln -s /run/elsewhere.journal /run/nsbox/nsb000000000005-link.journal
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        netns_list after; observe_netns nsbtest-victim after; observe_netns {p}decoy after
        cat /proc/self/mountinfo > $OUT/mountinfo.after
        cat /run/victim-file > $OUT/victim-file 2>&1; test -d /run/victim-dir && echo yes > $OUT/victim-dir
        ls /run/nsbox > $OUT/journals.after
    ''', tmp_path)
    rc, err, out = _clean_output(tmp_path)
    assert "Traceback" not in "\n".join(err), err
    for name in ("nsbtest-victim", f"{p}decoy"):
        assert (tmp_path / f"{name}.after").read_text() == (tmp_path / f"{name}.before").read_text(), \
            f"{name} was removed or replaced"
        assert (tmp_path / f"{name}.before").read_text().startswith("net:["), name
    assert {"nsbtest-victim", f"{p}decoy"} <= _names(tmp_path, "after")
    assert (tmp_path / "victim-file").read_text() == "keep\n"
    assert (tmp_path / "victim-dir").exists()
    assert "/run/bind-dst" in _mounts_under(tmp_path, "after", "/run/bind-dst")
    skipped = [ln for ln in err if ln.startswith("nsbox: clean: skipping /run/nsbox/")]
    assert skipped == err and len(err) == 5, err  # one line per bad journal, nothing else
    by_journal = {ln.split()[3].rstrip(":"): ln for ln in err}
    assert "old-format" in by_journal["/run/nsbox/nsb000000000001-old.journal"]
    assert "not a namespace of this lab" in by_journal["/run/nsbox/nsb000000000002-paths.journal"]
    assert "not a namespace of this lab" in by_journal["/run/nsbox/nsb000000000003-escape.journal"]
    assert "unknown kind" in by_journal["/run/nsbox/nsb000000000004-kind.journal"]
    assert "/run/nsbox/nsb000000000005-link.journal" in by_journal
    # the well-formed one was followed: its "namespace" is somebody else's, so left alone
    assert f"{p}decoy" in out and "left alone" in out, out
    assert rc == 1, "a skipped journal is a failure the user must look at"


@pytest.mark.parametrize("case", ["journal of another uid", "journal writable by others",
                                  "directory writable by group", "directory of another uid"])
def test_untrusted_journal_or_directory_is_not_followed(case, kernel, tmp_path) -> None:
    """A journal that would prove a real namespace (the right inode, nsbox's prefix)
    is still not followed unless root wrote it where only root can write."""
    p = _prefix()
    tamper = {
        "journal of another uid": f"chown 65534 /run/nsbox/{p}lab.journal",
        "journal writable by others": f"chmod 0606 /run/nsbox/{p}lab.journal",
        "directory writable by group": "chmod 0770 /run/nsbox",
        "directory of another uid": "chown 65534 /run/nsbox",
    }[case]
    _run(kernel, f'''
        ip netns add {p}host
        observe_netns {p}host before
        ino=$(stat -L -c %i /run/netns/{p}host); dev=$(stat -L -c %d /run/netns/{p}host)
        mkdir -m 0700 /run/nsbox
        journal {p}lab.journal <<EOF
        {{"kind": "owner", "pid": "999999999", "start": "1", "format": 2}}
        {{"kind": "netns", "path": "/run/netns/{p}host", "ino": $ino, "dev": $dev, "pin_ino": 1, "pin_dev": 1}}
        EOF
        {tamper}
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        observe_netns {p}host after
    ''', tmp_path)
    rc, err, _ = _clean_output(tmp_path)
    before = (tmp_path / f"{p}host.before").read_text()
    assert before.startswith("net:[")
    assert (tmp_path / f"{p}host.after").read_text() == before, f"{case}: the namespace was removed"
    assert rc == 1 and len(err) == 1, err
    assert ("owned by uid 65534" if "uid" in case else "writable by group or others") in err[0], err


def test_a_bad_journal_does_not_block_a_stale_lab(kernel, tmp_path) -> None:
    """kill -9 an --on-host run; next to its journal lie malformed ones. clean removes
    the dead lab, reports each bad journal in one line, and once they are gone
    leaves /run exactly as before the lab."""
    _run(kernel, '''
        $NSBOX run bridge-mode --on-host --then 'touch /run/lab-up; sleep 60' > /dev/null 2>&1 &
        pid=$!
        for i in $(seq 600); do [ -e /run/lab-up ] && break; sleep 0.05; done
        kill -9 $pid; wait $pid; rm -f /run/lab-up
        netns_list killed
        printf '{not json\\n' | journal nsb000000000001-garbage.journal
        printf '[1, 2]\\n' | journal nsb000000000002-list.journal
        printf '{"kind": "owner", "pid": "999999999", "start": "1", "format": 2}\\n{"kind": "netns"}\\n' \\
            | journal nsb000000000003-fields.journal
        printf '{"kind": "owner", "pid": "999999999", "start": "1", "format": 2}\\n{"path": "/run/x"}\\n' \\
            | journal nsb000000000004-nokind.journal
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        netns_list cleaned
        rm /run/nsbox/nsb00000000000[1234]-*.journal
        $NSBOX clean > $OUT/clean2.out 2> $OUT/clean2.err; echo $? > $OUT/clean2.rc
        ls -a /run > $OUT/run.after
        cat /proc/self/mountinfo > $OUT/mountinfo.after
    ''', tmp_path)
    killed = _names(tmp_path, "killed")
    assert len([n for n in killed if kernel.ONHOST_NETNS.match(n)]) == 5, killed  # the leftovers are real
    rc, err, out = _clean_output(tmp_path)
    assert "Traceback" not in "\n".join(err)
    assert len(err) == 4 and all(ln.startswith("nsbox: clean: skipping /run/nsbox/nsb00000000000") for ln in err), err
    assert "removing nsb" in out and "bridge-mode.journal" in out, out
    assert not _names(tmp_path, "cleaned"), "the dead lab's namespaces survived clean"
    assert rc == 1
    assert (tmp_path / "clean2.rc").read_text().strip() == "0", (tmp_path / "clean2.err").read_text()
    assert (tmp_path / "clean2.out").read_text().strip() == "nothing to clean"
    # /run/netns (made by the lab, then its self-bind) and /run/nsbox are gone again
    assert not {"netns", "nsbox"} & set((tmp_path / "run.after").read_text().split())
    assert not _mounts_under(tmp_path, "after", "/run/netns")


# --------------------------------------------------------------------------- item 5: a name collision

def test_a_name_collision_fails_and_spares_the_other_namespace(kernel, tmp_path) -> None:
    """The netns nsbox would call PREFIX-c1 exists already: the run fails saying so,
    that namespace survives (same inode) and the lab's own namespaces are gone."""
    p = _prefix()
    _run(kernel, f'''
        ip netns add {p}c1
        observe_netns {p}c1 before
        $NSBOX run bridge-mode --on-host --format json > $OUT/run.json 2> $OUT/run.err; echo $? > $OUT/run.rc
        observe_netns {p}c1 after
        netns_list after
        ls -a /run/nsbox > $OUT/nsbox.after 2>&1 || true
    ''', tmp_path, env={"NSBOX_TEST_PREFIX": p})
    rc = int((tmp_path / "run.rc").read_text())
    result = json.loads((tmp_path / "run.json").read_text())["results"][0]
    assert rc == 1, (tmp_path / "run.err").read_text()
    assert f"netns {p}c1 already exists" in (result["error"] or ""), result
    assert "teardown" not in result["error"], result
    before = (tmp_path / f"{p}c1.before").read_text()
    assert before.startswith("net:[") and (tmp_path / f"{p}c1.after").read_text() == before
    assert _names(tmp_path, "after") == {f"{p}c1"}, "the lab's own namespaces were not undone"
    assert "No such file" in (tmp_path / "nsbox.after").read_text()


def test_test_prefix_hook_is_ignored_unless_it_is_a_prefix(kernel, tmp_path) -> None:
    _run(kernel, '''
        $NSBOX run bridge-mode --on-host --format json --then 'ip -j netns list > $OUT/netns.during' \\
            > $OUT/run.json 2> $OUT/run.err; echo $? > $OUT/run.rc
    ''', tmp_path, env={"NSBOX_TEST_PREFIX": "../../tmp/x-"})
    names = _names(tmp_path, "during")
    assert len(names) == 5 and all(kernel.ONHOST_NETNS.match(n) for n in names), names
    assert (tmp_path / "run.rc").read_text().strip() == "0", (tmp_path / "run.err").read_text()


# --------------------------------------------------------------------------- item 6: ip netns add during a lab

def test_ip_netns_add_during_a_lab_does_not_make_it_leak(kernel, tmp_path) -> None:
    """No /run/netns before; `ip netns add` runs while the lab is up. Teardown reports
    no error, every pin of the lab is gone, the user's namespace is untouched and
    keeps /run/netns (as iproute2 leaves it), and clean has nothing to do."""
    # --then runs in the host node's own mount namespace (as a container's); the user's
    # `ip netns add` is the host's, run in this script's mount namespace (HERE) while the lab is up.
    _run(kernel, '''
        test ! -e /run/netns
        export HERE=$$
        $NSBOX run bridge-mode --on-host --format json --then \\
            'nsenter -t $HERE -m sh -c "ip netns add nsbtest-user && ip -j netns list > $OUT/netns.during"' \\
            > $OUT/run.json 2> $OUT/run.err; echo $? > $OUT/run.rc
        netns_list after; observe_netns nsbtest-user after
        cat /proc/self/mountinfo > $OUT/mountinfo.after
        ls -a /run/netns > $OUT/runnetns.after
        $NSBOX clean > $OUT/clean.out 2> $OUT/clean.err; echo $? > $OUT/clean.rc
        ip netns delete nsbtest-user
        netns_list deleted
        cat /proc/self/mountinfo > $OUT/mountinfo.deleted
    ''', tmp_path)
    result = json.loads((tmp_path / "run.json").read_text())["results"][0]
    assert result["error"] is None, result["error"]
    assert (tmp_path / "run.rc").read_text().strip() == "0", (tmp_path / "run.err").read_text()
    during = _names(tmp_path, "during")
    assert "nsbtest-user" in during and len(during) == 6, during  # both tools see the same directory
    assert _names(tmp_path, "after") == {"nsbtest-user"}
    assert (tmp_path / "nsbtest-user.after").read_text().startswith("net:[")
    pins = _mounts_under(tmp_path, "after", "/run/netns") - {"/run/netns"}
    assert pins == {"/run/netns/nsbtest-user"}, f"pins of the lab still mounted: {pins}"
    assert (tmp_path / "runnetns.after").read_text().split() == [".", "..", "nsbtest-user"]
    rc, err, out = _clean_output(tmp_path)
    assert (rc, err, out.strip()) == (0, [], "nothing to clean")
    assert not _names(tmp_path, "deleted")
    assert _mounts_under(tmp_path, "deleted", "/run/netns") <= {"/run/netns"}


def test_a_lab_alone_leaves_run_as_it_found_it(kernel, tmp_path) -> None:
    """No /run/netns before and nobody else uses it: the lab's shared self-bind of
    /run/netns, the directory and /run/nsbox are all gone afterwards."""
    _run(kernel, '''
        export HERE=$$
        $NSBOX run bridge-mode --on-host --format json \\
            --then 'nsenter -t $HERE -m grep " /run/netns " /proc/self/mountinfo > $OUT/runnetns.during' \\
            > $OUT/run.json 2> $OUT/run.err; echo $? > $OUT/run.rc
        ls -a /run > $OUT/run.after
        cat /proc/self/mountinfo > $OUT/mountinfo.after
    ''', tmp_path)
    assert (tmp_path / "run.rc").read_text().strip() == "0", (tmp_path / "run.err").read_text()
    during = (tmp_path / "runnetns.during").read_text()
    assert "shared:" in during, f"/run/netns was not a shared mount during the lab:\n{during}"
    assert not {"netns", "nsbox"} & set((tmp_path / "run.after").read_text().split())
    assert not _mounts_under(tmp_path, "after", "/run/netns")
