"""--artifacts without the kernel: bad paths are one-line usage errors before
anything is built, the capture filter agrees with tcpdump's own BPF compiler,
and the pcap files nsbox writes are what tcpdump reads."""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from nsbox.artifacts import pcap
from nsbox.artifacts.capture import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Filter
from nsbox.artifacts.involved import involved_nodes, slug
from nsbox.artifacts.target import prepare_dir
from nsbox.errors import UsageError
from nsbox.kinds import protocols
from nsbox.model import Lab
from tests.support.paths import REPO



def nsbox(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSBOX_")}
    return subprocess.run([sys.executable, "-m", "nsbox", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("make, extra, words", [
    (lambda t: str(t / "file" / "sub"), [], "is not a directory"),
    (lambda t: str(t / "file"), [], "is not a directory"),
    (lambda t: "/run/nsbox-artifacts", [], "private to the sandbox"),
    (lambda t: "", [], "needs a directory"),
    (lambda t: str(t / "file" / "sub"), ["--on-host"], "is not a directory"),
])
def test_bad_artifacts_dir_is_one_line_before_anything(tmp_path, make, extra, words):
    (tmp_path / "file").write_text("not a directory")
    p = nsbox("run", "bridge-mode", "--artifacts", make(tmp_path), *extra)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsbox: error: --artifacts"), p.stderr
    assert words in lines[0]


def test_prepare_dir_is_absolute_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert prepare_dir("a/b", sandboxed=True) == str(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    assert prepare_dir("/run/x", sandboxed=False) == "/run/x"  # on the host /run is the real one
    with pytest.raises(UsageError):
        prepare_dir("/run", sandboxed=True)


def test_involved_nodes_are_source_destination_owner_and_host():
    lab = Lab("t")
    a, b = lab.node("a"), lab.node("b")
    a.address("eth0", "10.0.0.1/24")
    b.address("eth0", "10.0.0.2/24")
    lab.host.address("br0", "10.0.0.254/24")
    by_name = lab.expect("a", "b", "tcp", 80)
    by_ip = lab.expect("b", "10.0.0.1", "icmp")
    to_host = lab.expect("a", "host", "icmp")
    ct = lab.expect_conntrack("host", of=by_name, reply_dst="10.0.0.254")
    assert involved_nodes(lab, by_name) == ["a", "b", "host"]
    assert involved_nodes(lab, by_ip) == ["b", "a", "host"]
    assert involved_nodes(lab, to_host) == ["a", "host"]
    assert involved_nodes(lab, ct) == ["host", "a", "b"]


@pytest.mark.parametrize("name, expected", [
    ("tcp/7 c1->c2", "tcp-7_c1-c2"),
    ("conntrack host: http c1->internet (NAT)", "conntrack_host-_http_c1-internet_-NAT"),
    ("../../etc", "etc"),
    ("..", "check"),
])
def test_slug_is_a_plain_file_name(name, expected):
    s = slug(name)
    assert "/" not in s and s == expected


# ----------------------------------------------------------------- packets, pcap and the filter

def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                    ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return h[:10] + struct.pack("!H", _csum(h)) + h[12:] + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, ipaddress.ip_address(src).packed,
                       ipaddress.ip_address(dst).packed) + payload


def tcp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8, 0)


def sctp(sport: int, dport: int) -> bytes:
    """An SCTP common header (ports, verification tag, CRC32c left 0) and an INIT chunk header."""
    return struct.pack("!HHII", sport, dport, 0, 0) + struct.pack("!BBH", 1, 0, 4)


ICMP_ECHO = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
ARP = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02" * 6, bytes([10, 0, 0, 1]), b"\0" * 6,
                  bytes([10, 0, 0, 2]))

PACKETS = [  # (protocol, packet)
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 7))),       # the probe's SYN
    (ETH_P_IP, ipv4("10.0.0.2", "10.0.0.1", 6, tcp(7, 40000))),       # its answer
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 8))),       # another port
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.3", 6, tcp(40000, 7))),       # another host
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 7))),      # udp, same port
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", 132, sctp(40000, 7))),    # sctp, same port
    (ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", 1, ICMP_ECHO)),           # icmp
    (ETH_P_ARP, ARP),
    (ETH_P_IPV6, ipv6("fd00::1", "fd00::2", 6, tcp(40000, 7))),
    (ETH_P_IPV6, ipv6("fd00::1", "fd00::2", 58, struct.pack("!BBHI", 128, 0, 0, 0))),
]


def write_pcap(path: Path) -> None:
    with open(path, "wb") as f:
        pcap.write_header(f)
        for i, (proto, pkt) in enumerate(PACKETS):
            pcap.write_packet(f, 1_700_000_000 + i / 10, pcap.sll_header(4, 1, b"\x02" * 6, proto) + pkt)


def test_pcap_round_trip(tmp_path):
    write_pcap(tmp_path / "x.pcap")
    with open(tmp_path / "x.pcap", "rb") as f:
        linktype, records = pcap.read(f)
        got = list(records)
    assert linktype == pcap.LINKTYPE_LINUX_SLL
    assert [r.data[16:] for r in got] == [p for _, p in PACKETS]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
@pytest.mark.parametrize("flt", [Filter("10.0.0.2", p, 7 if protocols.get(p).needs_port else None)
                                 for p in protocols.names()] + [Filter("fd00::2", "http", 7)],
                         ids=lambda f: f"{f.proto}-{f.dst}")  # every registered protocol's filter
def test_filter_agrees_with_tcpdumps_bpf_on_a_pcap_tcpdump_reads(tmp_path, flt):
    path = tmp_path / "x.pcap"
    write_pcap(path)
    read = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, timeout=10)
    assert read.returncode == 0 and len(read.stdout.splitlines()) == len(PACKETS), read.stdout + read.stderr
    filtered = subprocess.run(["tcpdump", "-n", "-r", str(path), flt.bpf()], capture_output=True, text=True,
                              timeout=10)
    assert filtered.returncode == 0, filtered.stderr
    mine = [i for i, (proto, pkt) in enumerate(PACKETS) if flt.matches(proto, pkt)]
    assert len(filtered.stdout.splitlines()) == len(mine), (flt.bpf(), filtered.stdout, mine)
