"""This very nsbox, run as a separate command: in a VM, or on the host for `--kernel host`.

"This very nsbox" is the package this process was loaded from (its directory is put
first on sys.path), run by this interpreter in isolated mode (-I): nothing from the
working directory or PYTHON* variables, as the sandbox runs it (nsbox/sandbox/enter.py).
The guest shares the host's root file system, so the same path holds the same code.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from nsbox.kinds import protocols as _protocols


def package_parent() -> str:
    """The directory that holds the nsbox package this process runs."""
    return str(Path(__file__).resolve().parents[2])


def command(args: list[str]) -> list[str]:
    """`nsbox ARGS` with this nsbox."""
    code = f"import sys; sys.path.insert(0, {package_parent()!r}); from nsbox.entry import main; main()"
    return [sys.executable, "-I", "-c", code, *args]


# Loaded first, as root of the guest's initial namespaces: nsbox runs in a user namespace,
# from where the kernel does not load modules on demand (the nat table is then "missing").
# A module the kernel does not have stays missing: that recipe SKIPs with the reason.
# About 4 s under TCG.
MODULES = ("veth bridge br_netfilter macvlan ipvlan 8021q dummy vxlan geneve wireguard tun "
           "ip_tables iptable_filter iptable_nat iptable_mangle iptable_raw ip6_tables ip6table_filter "
           "ip6table_nat ip6table_mangle ip6table_raw nf_conntrack nf_conntrack_netlink nf_nat nf_tables "
           "nft_compat nft_chain_nat nft_ct nft_nat nft_masq nft_redir nft_reject_inet nft_fib_inet "
           "xt_conntrack xt_MASQUERADE xt_addrtype xt_nat xt_comment xt_mark xt_multiport xt_tcpudp "
           "xt_REDIRECT xt_physdev xt_statistic xt_recent xt_LOG xt_limit xt_state sch_netem ip_vs").split() \
    + list(_protocols.kernel_modules())  # a probe protocol's own (sctp): nsbox/kinds/protocols/


def script(args: list[str]) -> str:
    """The guest's shell script: nsbox ARGS as root from /, its stdout, stderr and exit
    status into the shared directory ($NSBOX_VM_DIR), and the kernel's release."""
    cmd = " ".join(shlex.quote(a) for a in command(args))
    return ("cd / || exit 1\n"
            'uname -r >"$NSBOX_VM_DIR/release"\n'
            f"for m in {' '.join(MODULES)}; do modprobe -q \"$m\" 2>/dev/null; done\n"
            f'{cmd} </dev/null >"$NSBOX_VM_DIR/stdout" 2>"$NSBOX_VM_DIR/stderr"\n'
            'echo $? >"$NSBOX_VM_DIR/rc"\n')


def run_here(args: list[str]) -> tuple[int, bytes]:
    """nsbox ARGS on this host (its own sandbox as usual): (exit status, stdout); stderr passes through."""
    proc = subprocess.run(command(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd="/")
    return proc.returncode, proc.stdout
