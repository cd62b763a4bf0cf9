"""Recipe for tests/test_kernel_listening.py: expect_listening, judged from the kernel's
socket tables of a node's netns.

a (10.91.0.2) serves tcp/7 and udp/5 (bound to the wildcard) and DNS on 127.0.0.53:53
(bound to that address only); b (10.91.0.3) serves nothing."""

from nsbox.recipe import Param, recipe


@recipe("listening", params=[
    Param("mutant", 0, "1: a serves tcp/9, not tcp/7; 2: a serves tcp/8 too; 3: the DNS server binds "
                       "127.0.0.54, not 127.0.0.53", min=0, max=3)])
def build(lab, mutant):
    """Sockets that listen (and one that must not), read from the kernel."""
    a, b = lab.node("a"), lab.node("b")
    lab.veth(a, "eth0", b, "eth0")
    a.address("eth0", "10.91.0.2/24")
    b.address("eth0", "10.91.0.3/24")
    a.serve("tcp", 9 if mutant == 1 else 7)
    if mutant == 2:
        a.serve("tcp", 8)
    a.serve("udp", 5)
    a.serve_dns(53, {"svc.cluster.local": "10.91.0.2"}, address="127.0.0.54" if mutant == 3 else "127.0.0.53")
    lab.expect_listening(a, "tcp", 7, name="tcp/7 listening in a")
    lab.expect_listening(a, "tcp", 7, address="10.91.0.2", name="tcp/7 on 10.91.0.2 (the wildcard takes it)")
    lab.expect_listening(a, "udp", 5, name="udp/5 listening in a")
    lab.expect_listening(a, "udp", 53, address="127.0.0.53", name="dns on 127.0.0.53")
    lab.expect_listening(a, "udp", 53, address="10.91.0.2", listening=False,
                         name="dns not on 10.91.0.2 (bound to one address)")
    lab.expect_listening(a, "tcp", 8, listening=False, name="nothing on tcp/8 in a")
    lab.expect_listening(b, "tcp", 7, listening=False, name="nothing on tcp/7 in b (a's netns only)")
    lab.expect("b", "a", "tcp", 9 if mutant == 1 else 7)
