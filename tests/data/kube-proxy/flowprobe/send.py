# Sends kube-proxy flow probes (tests/kernel/test_kernel_kubeproxy_flows.py; nsbox's own helper, not vendored).
# probes: JSON list of [key, proto, src, dst, dport, sport0, count]; prints {key: [errno...]}
import errno, json, socket, sys, time
probes = json.loads(sys.argv[1])
socks = []
for key, proto, src, dst, dport, sport0, count in probes:
    for i in range(count):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        v6 = ":" in dst
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # IP(V6)_TRANSPARENT: a source this namespace does not own
        s.setsockopt(socket.IPPROTO_IPV6, 75, 1) if v6 else s.setsockopt(socket.SOL_IP, 19, 1)
        s.bind((src, sport0 + i))
        s.setblocking(False)
        first = 0
        if proto == "tcp":
            first = s.connect_ex((dst, dport))
            first = 0 if first == errno.EINPROGRESS else first
        else:
            try:
                s.connect((dst, dport))
                s.send(b"probe")
            except OSError as e:
                first = e.errno
        socks.append((key, proto, s, first))
time.sleep(0.4)
out = {}
for key, proto, s, first in socks:
    err = first or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if proto == "udp" and not err:
        try:
            s.recv(16)
        except BlockingIOError:
            pass  # nothing came back
        except OSError as e:
            err = e.errno
    out.setdefault(key, []).append(errno.errorcode.get(err, str(err)) if err else "")
    s.close()
print(json.dumps(out))
