"""The baseline of the probe-rate figure: a plain Python socket loop with setns.

Run inside a live probe-bench lab (nsbox run probe-bench --then 'python3 probe_loop.py N OUT'):
for every ordered pair of the N nodes, setns into the source's netns, open a TCP
socket there, go back, connect to the destination's tcp/7 echo server, send a
line, read it back. One thread, blocking sockets: what a person would write.
Writes "<probes> <seconds>" to OUT.
"""

import ctypes
import os
import socket
import sys
import time

CLONE_NEWNET = 0x40000000


def main() -> None:
    n, out = int(sys.argv[1]), sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = [os.open(f"/run/netns/n{i}", os.O_RDONLY) for i in range(n)]
    ips = [f"10.{100 + j // 250}.{j % 250}.2" for j in range(n)]
    ok = 0
    start = time.monotonic()
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            libc.setns(fds[i], CLONE_NEWNET)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            libc.setns(home, CLONE_NEWNET)
            s.settimeout(1.0)
            try:
                s.connect((ips[j], 7))
                s.sendall(b"nsbox-probe baseline\n")
                ok += s.recv(64) != b""
            except OSError:
                pass
            finally:
                s.close()
    with open(out, "w") as f:
        f.write(f"{ok} {time.monotonic() - start}\n")


if __name__ == "__main__":
    main()
