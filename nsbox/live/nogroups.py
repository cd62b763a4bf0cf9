"""`python -I nogroups.py CMD...`: run CMD with setgroups(2) answering success and doing nothing.

Only for `exec`/`shell` in an unprivileged user's sandbox. There the kernel
denies setgroups for good (user_namespaces(7): an unprivileged process may write
its gid_map only after writing "deny" to /proc/PID/setgroups), and the only ids
mapped are 0. Tools that drop privileges call setgroups first: `tcpdump -Z root`
fails with EPERM before it captures anything. As the groups cannot change in
such a namespace anyway, a seccomp filter that makes setgroups return 0 lets
them go on; a drop to any other user still fails (its setuid/setgid, unmapped),
so no program is led to believe it runs with less than it does. The filter sets
no_new_privs, which takes nothing from root in the lab: it has every capability
of its namespace already.

Only the standard library (it runs once per command, before it).
"""

import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
# machine -> (AUDIT_ARCH_*, __NR_setgroups)
ARCHES = {"x86_64": (0xC000003E, 116), "aarch64": (0xC00000B7, 159)}


def install() -> bool:
    arch = ARCHES.get(platform.machine())
    if arch is None:
        return False
    audit_arch, nr = arch
    prog = [
        (BPF_LD_W_ABS, 0, 0, 4),        # A = seccomp_data.arch
        (BPF_JEQ_K, 0, 3, audit_arch),  # another ABI: allow
        (BPF_LD_W_ABS, 0, 0, 0),        # A = seccomp_data.nr
        (BPF_JEQ_K, 0, 1, nr),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | 0),  # setgroups: "success", nothing done
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(fbuf)), 0, 0) == 0


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: nogroups.py CMD [ARGS...]")
    install()  # without it the command runs all the same, as it would have
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as e:
        sys.stderr.write(f"nsbox: {sys.argv[1]}: {e.strerror}\n")
        sys.exit(127 if isinstance(e, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
