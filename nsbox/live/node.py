"""A node's own process, like a pod's pause container: `python -I node.py PARENT NETNS NAME`.

It enters the node's netns, takes a UTS namespace (the node's hostname) and a
mount namespace of its own (the node's /etc/hosts, /etc/resolv.conf and
/etc/hostname, as Docker writes them; /sys showing the node's interfaces, as
`ip netns exec` mounts it), says "ok" on stdout and waits. `exec` and `shell`
enter its namespaces. It ends when the holder's end of its stdin closes or the
holder dies (PR_SET_PDEATHSIG): it never outlives the lab.

Only the standard library: it starts once per node, and quickly.
The files come on stdin as one JSON line: {"hosts": ..., "resolv": ...}.
"""

import ctypes
import json
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x00020000, 0x04000000, 0x40000000
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 4096, 16384, 1 << 18, 2, 4
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1

libc = ctypes.CDLL(None, use_errno=True)


def check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def bind_file(text, target, scratch):
    """Bind a file holding TEXT over TARGET (in this mount namespace only)."""
    if not os.path.exists(target):
        return
    src = os.path.join(scratch, os.path.basename(target))
    with open(src, "w") as f:
        f.write(text)
    check(libc.mount(src.encode(), target.encode(), None, MS_BIND, None), f"bind {target}")


def main():
    parent, netns, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != parent:  # the holder died before the line above
        sys.exit(1)
    files = json.loads(sys.stdin.readline())
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    check(libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    os.close(fd)
    check(libc.unshare(CLONE_NEWUTS | CLONE_NEWNS), "unshare(UTS|NS)")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    host = name.encode()
    check(libc.sethostname(host, len(host)), "sethostname")
    # /sys of this netns, as `ip netns exec` does; best effort (the kernel may refuse
    # a new sysfs in a user namespace when parts of /sys are hidden).
    if libc.umount2(b"/sys", MNT_DETACH) == 0:
        libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None)
    # The files are written on a scratch tmpfs that is detached once they are bound:
    # nothing is written to the host's disk and nothing stays behind.
    scratch = "/tmp"
    check(libc.mount(b"tmpfs", scratch.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=700,size=64k"),
          "tmpfs for the node's files")
    try:
        bind_file(files["hosts"], "/etc/hosts", scratch)
        bind_file(files["resolv"], "/etc/resolv.conf", scratch)
        bind_file(name + "\n", "/etc/hostname", scratch)
    finally:
        libc.umount2(scratch.encode(), MNT_DETACH)
    os.chdir("/")
    sys.stdout.write("ok\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(4096):  # until the holder closes it (or dies)
        pass


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError, IndexError) as e:
        sys.stdout.write(f"error {e}\n")
        sys.exit(1)
