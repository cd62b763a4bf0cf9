"""A short packet capture of one probe, in the namespaces it crosses.

tcpdump is the capturer where it can run: on the real host's user namespace.
Inside the sandbox (a user namespace mapping only root) it cannot: as root it
always drops privileges to user 'tcpdump' (initgroups + setuid), which the
sandbox neither maps nor allows (setgroups is denied), so it exits before
capturing. There nsbox captures itself with an AF_PACKET socket opened inside
the namespace, exactly what libpcap does for `-i any`, and writes the same
pcap format (LINKTYPE_LINUX_SLL) that tcpdump, tshark or Wireshark read.

Both are bounded: at most MAX_PACKETS packets, started before the probe and
stopped (tcpdump: by pid, SIGINT, then wait) SETTLE seconds after it.
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from nsbox import tools
from nsbox.artifacts import pcap
from nsbox.artifacts.folder import Folder
from nsbox.host import netns
from nsbox.kinds import protocols

MAX_PACKETS = 200
SETTLE = 0.3          # late answers (ICMP errors, retransmissions) after the probe returns
READY_TIMEOUT = 10.0  # tcpdump says "listening on ..." when it is capturing
STOP_TIMEOUT = 2.0
ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD


@dataclass(frozen=True)
class Filter:
    """Which packets belong to the probe: its flow to DST:PORT over its protocol's
    transport (nsbox/kinds/protocols/: tcp for http, udp for dns, ...), plus every ICMP
    and ARP packet (unreachables and unanswered ARP are often the cause)."""

    dst: str
    proto: str            # a probe protocol: icmp, tcp, udp, http, dns, sctp, ...
    port: int | None

    @property
    def transport(self) -> str | None:
        return protocols.get(self.proto).transport

    @property
    def l4(self) -> int | None:
        return protocols.get(self.proto).ip_proto

    def bpf(self) -> str:
        always = "icmp or icmp6 or arp"
        if self.l4 is None or self.port is None:
            return always
        return f"(host {self.dst} and {self.transport} port {self.port}) or {always}"

    def matches(self, protocol: int, pkt: bytes) -> bool:
        """The same rule as bpf(), applied to a network-layer packet."""
        if protocol == ETH_P_ARP:
            return True
        if protocol == ETH_P_IP and len(pkt) >= 20:
            nh, src, dst, l4_at = pkt[9], pkt[12:16], pkt[16:20], (pkt[0] & 0x0F) * 4
            icmp = 1
        elif protocol == ETH_P_IPV6 and len(pkt) >= 40:
            nh, src, dst, l4_at = pkt[6], pkt[8:24], pkt[24:40], 40
            icmp = 58
        else:
            return False
        if nh == icmp:
            return True
        if self.l4 is None or nh != self.l4 or len(pkt) < l4_at + 4:
            return False
        target = ipaddress.ip_address(self.dst).packed
        sport, dport = int.from_bytes(pkt[l4_at:l4_at + 2], "big"), int.from_bytes(pkt[l4_at + 2:l4_at + 4], "big")
        return target in (src, dst) and self.port in (sport, dport)


@dataclass
class Outcome:
    file: str
    node: str
    by: str               # "tcpdump" or "nsbox (AF_PACKET)"
    packets: int = 0
    note: str = ""        # why there is no capture, or what went wrong


def tcpdump_usable() -> tuple[str | None, str]:
    """(path to tcpdump, "") when it can capture here, else (None, why not)."""
    path = tools.find("tcpdump")
    if path is None:
        return None, "tcpdump is not installed (apt install tcpdump)"
    if not _initial_userns():
        return None, ("tcpdump cannot run in nsbox's sandbox (as root it drops privileges to user "
                      "'tcpdump', which the sandbox's user namespace does not map)")
    try:  # `-i any` is libpcap's Linux pseudo-device; a build without it would need one capture per link
        devices = subprocess.run([path, "-D"], capture_output=True, text=True, timeout=5, check=False).stdout
    except subprocess.TimeoutExpired:
        devices = ""
    if not any(line.split(" ", 1)[0].endswith(".any") for line in devices.splitlines()):
        return None, "this tcpdump cannot capture on the 'any' device"
    return path, ""


def _initial_userns() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


class _Tcpdump:
    def __init__(self, tcpdump: str, node: str, netns_path: str, flt: Filter, folder: Folder, name: str) -> None:
        self.outcome = Outcome(folder.join(name), node, "tcpdump")
        self._out: BinaryIO = folder.create(name, read_back=True)  # read back to count the packets
        nsenter = tools.need("nsenter", "util-linux")
        # nsenter --net execs tcpdump in place: the pid we signal is tcpdump's.
        # -w - : the file is opened here, so tcpdump's own privilege drop cannot
        # stop it from writing; -U flushes each packet; --immediate-mode, because
        # libpcap's TPACKET_V3 ring otherwise holds packets for up to a second and
        # an interrupted tcpdump never writes them (0 packets captured).
        argv = [nsenter, f"--net={netns_path}", tcpdump, "-i", "any", "--immediate-mode", "-n", "-U",
                "-s", str(pcap.SNAPLEN),
                "-c", str(MAX_PACKETS), "-w", "-", flt.bpf()]
        self._proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._err = b""

    def wait_ready(self) -> None:
        assert self._proc.stderr is not None
        deadline = time.monotonic() + READY_TIMEOUT
        fd = self._proc.stderr.fileno()
        while b"listening on" not in self._err:
            left = deadline - time.monotonic()
            if left <= 0:
                self.outcome.note = f"tcpdump did not start within {READY_TIMEOUT:.0f} s"
                return
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:  # exited
                    self._proc.wait()
                    self.outcome.note = f"tcpdump failed: {self._err.decode(errors='replace').strip()}"
                    return
                self._err += chunk

    def stop(self) -> Outcome:
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            if self._proc.poll() is not None:
                break
            self._proc.send_signal(sig)
            try:
                self._proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        assert self._proc.stderr is not None
        self._err += self._proc.stderr.read()
        self._proc.stderr.close()
        self._out.seek(0)
        self.outcome.packets = _count(self._out)
        self._out.close()
        return self.outcome


class _PacketSocket:
    """What libpcap does for `-i any`: one AF_PACKET socket for every interface
    of the namespace, cooked (SOCK_DGRAM) so each packet starts at the network layer."""

    def __init__(self, node: str, netns_path: str, flt: Filter, folder: Folder, name: str) -> None:
        self.outcome = Outcome(folder.join(name), node, "nsbox (AF_PACKET)")
        self._folder, self._name = folder, name
        self._flt = flt
        self._packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._sock = netns.socket_in(netns_path, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._loop, name=f"nsbox-capture-{node}", daemon=True)

    def wait_ready(self) -> None:
        self._thread.start()  # the socket already receives: it was bound when created

    def _loop(self) -> None:
        while not self._stop.is_set() and len(self._packets) < MAX_PACKETS:
            try:
                data, addr = self._sock.recvfrom(pcap.SNAPLEN)
            except socket.timeout:
                continue
            except OSError as e:
                self.outcome.note = f"capture stopped: {e.strerror or e}"
                return
            _, protocol, pkttype, hatype, hwaddr = addr[:5]
            if self._flt.matches(protocol, data):
                self._packets.append((time.time(), pcap.sll_header(pkttype, hatype, hwaddr, protocol) + data))

    def stop(self) -> Outcome:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        self._sock.close()
        with self._folder.create(self._name) as f:
            pcap.write_header(f)
            for ts, data in self._packets:
                pcap.write_packet(f, ts, data)
        self.outcome.packets = len(self._packets)
        return self.outcome


@dataclass
class Capturing:
    """Captures running in several namespaces around one probe."""

    started: list[_Tcpdump | _PacketSocket] = field(default_factory=list)
    why_not_tcpdump: str = ""

    def stop(self) -> list[Outcome]:
        time.sleep(SETTLE)
        return [c.stop() for c in self.started]


def start(where: list[tuple[str, str, Folder, str]], flt: Filter) -> Capturing:
    """Start a capture per (node, netns path, folder, file name) and return once all are capturing."""
    tcpdump, why = tcpdump_usable()
    run = Capturing(why_not_tcpdump=why)
    try:
        for node, path, folder, name in where:
            run.started.append(_Tcpdump(tcpdump, node, path, flt, folder, name) if tcpdump
                               else _PacketSocket(node, path, flt, folder, name))
        for c in run.started:
            c.wait_ready()
    except BaseException:
        for c in run.started:
            c.stop()
        raise
    return run


def _count(f: BinaryIO) -> int:
    try:
        _, records = pcap.read(f)
        return sum(1 for _ in records)
    except (OSError, ValueError):
        return 0
