"""Trust, round two (issue 12), input side: which recipe code runs, one validation for
every mode, bad input refused in one line before the kernel is touched.

Every case here runs nsbox as a separate process (python -m nsbox from this checkout)
and judges what it printed, its exit status, and files a planted recipe would have
written: nothing here needs the kernel (validate/explain/show load recipes in the jail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.paths import REPO

NOBODY = 65534


def nsbox(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    base["PYTHONPATH"] = str(REPO)  # this checkout's nsbox, whatever the working directory
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("nsbox: error: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def planted(d: Path, marker: Path, name: str = "evil.py") -> Path:
    """A recipe file that, if ever run, writes MARKER (and would do worse as root)."""
    path = d / name
    path.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return path


def tiny(d: Path, filename: str, *names: str, extra: str = "") -> Path:
    body = "from nsbox.recipe import recipe\n" + extra
    for n in names:
        body += textwrap.dedent(f"""
            @recipe({n!r})
            def build_{n.replace('-', '_')}(lab):
                '''{n}.'''
                lab.host.bridge("br0", "10.0.0.1/24")
                lab.expect("host", "host", "icmp")
            """)
    path = d / filename
    path.write_text(body)
    return path


@pytest.fixture
def rdir(tmp_path: Path) -> Path:
    d = tmp_path / "recipes"
    d.mkdir(mode=0o755)
    return d


# -- item 4: --recipes DIR runs only what is asked for, from trusted places ------------

@pytest.mark.parametrize("cmd", [["validate", "bridge-mode"], ["explain", "bridge-mode"],
                                 ["show", "bridge-mode"], ["validate", "mine"]])
def test_a_shipped_or_named_recipe_runs_no_other_file_of_the_dir(rdir, tmp_path, cmd):
    marker = tmp_path / "marker"
    planted(rdir, marker)
    tiny(rdir, "mine.py", "mine")
    p = nsbox(*cmd, "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "a recipe file nobody asked for ran"


def test_a_pattern_is_matched_without_running_files(rdir, tmp_path):
    marker = tmp_path / "marker"
    planted(rdir, marker)
    tiny(rdir, "mine.py", "mine-a", "mine-b")
    p = nsbox("validate", "mine-*", "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["mine-a:", "mine-b:"]
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_group_or_world_writable_recipe_dir_is_refused(rdir, tmp_path, mode):
    marker = tmp_path / "marker"
    tiny(rdir, "mine.py", "mine")
    planted(rdir, marker)
    os.chmod(rdir, mode)
    one_line_error(nsbox("validate", "bridge-mode", "--recipes", str(rdir)), "writable")
    one_line_error(nsbox("list", "--recipes", str(rdir)), "writable")
    assert not marker.exists()


def test_a_recipe_file_of_another_user_is_refused(rdir, tmp_path):
    marker = tmp_path / "marker"
    evil = tiny(rdir, "evil.py", "evil", extra=f"open({str(marker)!r}, 'w').write('ran')\n")
    os.chown(evil, NOBODY, NOBODY)
    one_line_error(nsbox("validate", "evil", "--recipes", str(rdir)), "owned by uid 65534")
    one_line_error(nsbox("validate", str(evil)), "owned by uid 65534")
    one_line_error(nsbox("run", str(evil)), "owned by uid 65534")  # refused before the sandbox
    p = nsbox("list", "--recipes", str(rdir))  # list names the file it did not load, exit 2
    assert p.returncode == 2 and "owned by uid 65534" in p.stderr
    assert not marker.exists()


def test_a_file_planted_by_nobody_in_a_sticky_world_writable_dir_never_runs():
    """The original attack: uid 65534 plants a recipe in a world-writable directory (like
    /tmp) that root then names with --recipes. Planted by a real process of uid 65534
    (pytest's tmp_path lies in a root-only directory nobody cannot enter)."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="nsbox-trust-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        shared = top / "shared"
        shared.mkdir()
        os.chmod(shared, 0o1777)
        marker = shared / "marker"
        evil = shared / "bridge_mode2.py"
        body = (f"open({str(marker)!r}, 'w').write('ran')\n"
                "from nsbox.recipe import recipe\n@recipe('evil')\ndef b(lab): pass\n")
        subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                        "import sys; open(sys.argv[1], 'w').write(sys.stdin.read())", str(evil)],
                       input=body, text=True, check=True, timeout=30)
        assert evil.stat().st_uid == NOBODY
        one_line_error(nsbox("validate", "bridge-mode", "--recipes", str(shared)), "writable")
        one_line_error(nsbox("validate", "evil", "--recipes", str(shared)), "writable")
        one_line_error(nsbox("validate", str(evil)), "owned by uid 65534")
        one_line_error(nsbox("run", str(evil)), "owned by uid 65534")
        assert not marker.exists()
    finally:
        shutil.rmtree(top)


def test_a_recipe_dir_owned_by_another_user_is_refused(rdir, tmp_path):
    tiny(rdir, "mine.py", "mine")
    os.chown(rdir, NOBODY, NOBODY)
    one_line_error(nsbox("validate", "mine", "--recipes", str(rdir)), "owned by uid 65534")


def test_a_recipe_dir_below_a_directory_another_user_controls_is_refused(tmp_path):
    # nobody could rename their directory away and put another in its place
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    rdir = theirs / "recipes"
    rdir.mkdir()
    tiny(rdir, "mine.py", "mine")
    one_line_error(nsbox("validate", "mine", "--recipes", str(rdir)), str(theirs))


def test_a_symlink_to_a_directory_another_user_owns_is_refused(tmp_path):
    """The link is followed once, and what it points to is judged (then used)."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    tiny(theirs, "mine.py", "mine")
    os.chown(theirs, NOBODY, NOBODY)
    link = tmp_path / "link"
    link.symlink_to(theirs)
    one_line_error(nsbox("validate", "mine", "--recipes", str(link)), str(theirs), "owned by uid 65534")


def test_a_sticky_world_writable_parent_is_fine(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    rdir = sticky / "recipes"
    rdir.mkdir()
    tiny(rdir, "mine.py", "mine")
    p = nsbox("validate", "mine", "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr


def test_a_relative_recipe_path_entry_is_refused(rdir, tmp_path):
    marker = tmp_path / "marker"
    planted(rdir, marker, "mine.py")
    one_line_error(nsbox("validate", "bridge-mode", env={"NSBOX_RECIPE_PATH": "recipes"}, cwd=tmp_path),
                   "NSBOX_RECIPE_PATH", "relative")
    one_line_error(nsbox("list", env={"NSBOX_RECIPE_PATH": "recipes"}, cwd=tmp_path), "relative")
    assert not marker.exists()


def test_nothing_is_run_from_the_working_directory(tmp_path):
    """python -m puts the working directory first on sys.path; the installed `nsbox` does
    not, and the sandboxed nsbox is a fork of it. A planted click.py or nsbox/
    in the caller's directory must not run as root through either."""
    marker = tmp_path / "marker"
    (tmp_path / "click.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "recipes").mkdir()
    planted(tmp_path / "recipes", marker, "bridge_mode.py")
    entry = Path(sys.executable).parent / "nsbox"
    if not entry.exists():
        pytest.skip("no installed nsbox entry point beside this python")
    env = {k: v for k, v in os.environ.items() if k != "NSBOX_RECIPE_PATH"}
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([str(entry), "validate", "bridge-mode"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()


# -- item 19: --all, patterns, several recipes, files with several recipes ---------------

def test_validate_all_and_star_validate_every_recipe():
    for args in (["--all"], ["*"]):
        p = nsbox("validate", *args)
        assert p.returncode == 0, p.stderr
        names = [ln.split()[1].rstrip(":") for ln in p.stdout.splitlines()]
        assert "bridge-mode" in names and "user-networks" in names and len(names) >= 9


def test_one_refused_recipe_among_several_is_its_own_error(rdir):
    tiny(rdir, "good.py", "good")
    (rdir / "bad.py").write_text(textwrap.dedent("""
        from nsbox.recipe import recipe

        @recipe("bad")
        def build(lab):
            lab.host.bridge("br0", "10.0.0.1/24")
            lab.expect("host", "host", "tcp", port=99)  # no server there
        """))
    p = nsbox("validate", "good", "bad", "--recipes", str(rdir))
    assert p.returncode == 2
    assert p.stdout.splitlines() == [ln for ln in p.stdout.splitlines() if ln.startswith("ok  good:")]
    assert len(p.stdout.splitlines()) == 1
    assert p.stderr.startswith("nsbox: error: bad: ") and len(p.stderr.splitlines()) == 1


def test_a_file_with_several_recipes_runs_them_all_or_one_by_name(rdir):
    f = tiny(rdir, "two.py", "first", "second")
    p = nsbox("validate", str(f))
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["first:", "second:"]
    p = nsbox("validate", f"{f}:second")
    assert p.returncode == 0, p.stderr
    assert [ln.split()[1] for ln in p.stdout.splitlines()] == ["second:"]
    one_line_error(nsbox("validate", f"{f}:third"), "no recipe 'third'")
    one_line_error(nsbox("explain", str(f)), "defines 2 recipes", f"{f}:NAME")


# -- item 20: one line, exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("opt, value", [("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"),
                                        ("--timeout", "soon"), ("--settle", "inf"), ("--settle", "-0.5")])
def test_a_bad_number_of_seconds_is_one_line(opt, value):
    one_line_error(nsbox("run", "bridge-mode", opt, value), opt)


# -- items 3, 6, 7: one validation, control characters, names after build ----------------

def recipe_file(d: Path, body: str, name: str = "bad") -> Path:
    path = d / f"{name.replace('-', '_')}.py"
    path.write_text("from nsbox.recipe import recipe\n\n"
                    f"@recipe({name!r})\n"
                    "def build(lab):\n"
                    "    lab.host.bridge('br0', '10.0.0.1/24')\n"
                    "    lab.expect('host', 'host', 'icmp')\n"
                    + textwrap.indent(textwrap.dedent(body), "    "))
    return path


INJECTED_RULE = "lab.host.iptables('filter').append('INPUT', '-p tcp -m tcp --dport \"80\\nCOMMIT\\n*raw\\n-A PREROUTING -j DROP\" -j ACCEPT')"


@pytest.mark.parametrize("body, words", [
    (INJECTED_RULE, "control character"),
    ("lab.host.iptables('filter').append('INPUT', '-m comment --comment \"a\\rb\" -j ACCEPT')", "control character"),
    ("lab.host.iptables('filter').new_chain('X\\nY')", "bad chain name"),
    ("lab.host.iptables('filter').new_chain('X\\x1bY')", "bad chain name"),
    ("lab.host.bridge('b\\x01r', '10.1.0.1/24')", "control characters"),
    ("lab.description = 'fine\\nPASS  forged 1 passed'", "control character"),
    ("lab.expect('host', 'host', 'icmp', name='x\\n1 passed')", "control character"),
    ("lab.name = '../x'", "renamed its lab"),
    ("lab.name = 'other'", "renamed its lab"),
    ("lab.host.nftables('include \"/etc/shadow\"')", "include"),
    ("lab.host.nftables('table ip t { chain c { type filter hook input priority 0; }\\n}\\ninclude \"/x\"')",
     "include"),
])
@pytest.mark.parametrize("mode", [["validate"], ["run"], ["run", "--on-host"]])  # explain, show: below
def test_the_same_refusal_in_every_mode(rdir, body, words, mode):
    """Item 6: the sandbox validated the live model, --on-host the serialized one, so a
    newline in a rule injected iptables-restore lines in the sandbox only. Now every mode
    validates the serialized model; all refuse before the kernel (exit 2, one line)."""
    recipe_file(rdir, body)
    one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)), words)


@pytest.mark.parametrize("mode", [["explain"], ["show"]])
def test_explain_and_show_refuse_the_same(rdir, mode):
    """They load through the recipe jail as validate and --on-host do."""
    recipe_file(rdir, INJECTED_RULE)
    one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)), "control character")


def test_set_values_with_control_characters_are_refused(rdir):
    one_line_error(nsbox("validate", "bridge-mode", "--set", "docker=29\n"), "control characters")
    one_line_error(nsbox("explain", "bridge-mode", "--set", "docker=2\x1b9"), "control characters")


def test_an_integer_of_5000_digits_is_one_line():
    one_line_error(nsbox("validate", "bridge-mode", "--set", "containers=" + "9" * 5000), "5000 characters")


def test_tools_are_found_in_system_dirs_only_and_path_is_sanitized(tmp_path, monkeypatch):
    """Item 8: a user-owned `sh` (or any tool) early on root's PATH must not run as root."""
    from nsbox import tools

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sh").write_text("#!/bin/true\n")
    os.chmod(fake / "sh", 0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    assert tools.need("sh", "dash") in ("/usr/bin/sh", "/bin/sh")
    tools.sanitize_path()
    assert str(fake) not in os.environ["PATH"]
    assert os.environ["PATH"] == tools.SAFE_PATH


# -- item 20: the rest, one line and exit 2 -------------------------------------------------

@pytest.mark.parametrize("mode", [["validate"], ["run"], ["run", "--on-host"]])
def test_a_node_named_by_a_number_is_one_line(rdir, mode):
    recipe_file(rdir, "lab.node(123)")
    one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)), "a node name is text, not 123")


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "9" * 5000])
def test_a_bad_fault_injection_count_is_one_line(rdir, value):
    recipe_file(rdir, "")
    one_line_error(nsbox("run", "bad", "--recipes", str(rdir), env={"NSBOX_FAULT_AFTER_STEPS": value}),
                   "NSBOX_FAULT_AFTER_STEPS")


def test_a_jail_reply_of_nested_json_is_one_line(rdir):
    """Recipe code shares the jail's pipe: it may write anything there and end the loader."""
    recipe_file(rdir, """
        import os, stat
        for fd in range(3, 64):
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.write(fd, b"[" * 200000 + b"]" * 200000)
            except OSError:
                pass
        os._exit(0)
        """)
    line = one_line_error(nsbox("validate", "bad", "--recipes", str(rdir)))
    assert "Traceback" not in line


def test_a_deeply_nested_lab_is_one_line(rdir):
    recipe_file(rdir, """
        deep = []
        for _ in range(100000):
            deep = [deep]
        lab.host.servers[0:0] = []
        lab.requires = deep
        """)
    for mode in (["validate"], ["run"]):
        one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)))


def test_doctor_with_a_missing_recipe_dir_is_a_usage_error():
    one_line_error(nsbox("doctor", "--recipes", "/nonexistent"), "/nonexistent")


def test_a_missing_dnslib_is_one_line():
    """dnslib is imported by the dns server and probe (a server thread): a lab with a dns
    check must say it is missing before anything is built (here: --on-host, no lab made)."""
    code = ("import sys; sys.modules['dnslib'] = None; sys.path.insert(0, %r); "
            "from nsbox.entry import main; main()" % str(REPO))
    p = subprocess.run([sys.executable, "-I", "-c", code, "run", "user-networks", "--on-host"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    one_line_error(p, "dnslib", "pip install dnslib")


@pytest.mark.parametrize("rule, words", [
    ("lab.host.iptables('filter').append('INPUT', '-m nosuchmatch -j ACCEPT')", "Couldn't load match"),
    ("lab.host.iptables('nat').append('POSTROUTING', '-j MASQUERADE --bogus 1')", "--bogus"),
    ("lab.host.iptables('filter').append('INPUT', '-p tcp -m tcp --dport 99999 -j ACCEPT')", "99999"),
    ("lab.host.ip6tables('filter').append('INPUT', '-m nosuchmatch -j ACCEPT')", "ip6tables"),
])
@pytest.mark.parametrize("mode", [["validate"], ["run"]])
def test_rules_iptables_refuses_are_refused_at_validation(rdir, rule, words, mode):
    """They used to fail when the restore ran, with the lab half built (exit 1)."""
    recipe_file(rdir, rule)
    one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)), words)


def test_with_several_recipes_the_one_iptables_refuses_is_named_and_the_others_run(rdir):
    """The rules of every recipe are judged by one `restore --test` per family (nsbox run
    --all); when that batch is refused, each recipe is judged alone, so the error still
    names the bad recipe's node and rule and the good recipe runs."""
    recipe_file(rdir, "lab.host.iptables('filter').append('INPUT', '-j ACCEPT')", name="good")
    recipe_file(rdir, "lab.host.iptables('filter').append('INPUT', '-m nosuchmatch -j ACCEPT')")
    p = nsbox("run", "good", "bad", "--recipes", str(rdir), "--on-host")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "nsbox: error: bad: node host: iptables-restore refuses '-A INPUT -m nosuchmatch -j ACCEPT'" \
        in p.stderr, p.stderr
    assert re.search(r"PASS\s+good", p.stdout), p.stdout


# -- item 21: what iptables accepts, stored as iptables-save prints it -----------------------
# (tests/kernel/test_kernel_trust_input.py checks these renders against the real iptables-save)

@pytest.mark.parametrize("spec, saved", [
    ("-p tcp --dport 8080 -j ACCEPT", "-p tcp -m tcp --dport 8080 -j ACCEPT"),
    ("-p udp ! --dport 53 -j DROP", "-p udp -m udp ! --dport 53 -j DROP"),
    ("-p icmp --icmp-type 8 -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("-p ipv6-icmp --icmpv6-type 128 -j ACCEPT", "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT"),
    ("-p tcp -m tcp --dport 80 -j ACCEPT", "-p tcp -m tcp --dport 80 -j ACCEPT"),
])
def test_the_protocol_match_is_implicit_as_in_iptables(spec, saved):
    from nsbox.model.rules import parse_rule

    assert parse_rule(spec).render() == saved
    assert parse_rule(saved).render() == saved


# -- item 22: duplicate addresses, probes answered by their own source ------------------------

DUPLICATE = """
    b = lab.node('b')
    lab.veth(b, 'eth0', lab.host, 'veth-b', b_master='br0')
    b.address('eth0', '10.0.0.2/24')
    c = lab.node('c')
    lab.veth(c, 'eth0', lab.host, 'veth-c', b_master='br0')
    c.address('eth0', '10.0.0.2/24')
    """


@pytest.mark.parametrize("mode", [["validate"], ["run"], ["run", "--on-host"]])
def test_the_same_address_on_two_nodes_of_one_bridge_is_refused(rdir, mode):
    recipe_file(rdir, DUPLICATE)
    one_line_error(nsbox(*mode, "bad", "--recipes", str(rdir)), "10.0.0.2", "b:eth0", "c:eth0", "duplicate")


def test_the_same_address_on_separate_segments_is_fine(rdir):
    recipe_file(rdir, """
        for n in ('b', 'c'):
            node = lab.node(n)
            lab.veth(node, 'eth0', lab.host, f'veth-{n}')  # point to point: a segment each
            node.address('eth0', '10.9.0.2/24')
        """)
    p = nsbox("validate", "bad", "--recipes", str(rdir))
    assert p.returncode == 0, p.stderr


def test_a_check_from_a_node_that_holds_the_target_address_is_refused(rdir):
    recipe_file(rdir, """
        a = lab.node('a')
        lab.veth(a, 'eth0', lab.host, 'veth-a', b_master='br0')
        a.address('eth0', '10.0.0.2/24')
        lab.host.address('lo', '10.0.0.2/32')  # not the bridge's segment: no duplicate there
        lab.expect('host', 'a', 'icmp', name='host->a')
        """)
    one_line_error(nsbox("validate", "bad", "--recipes", str(rdir)), "host->a", "holds 10.0.0.2 itself")
