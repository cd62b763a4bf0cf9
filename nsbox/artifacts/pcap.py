"""The classic pcap file format (what `tcpdump -w` writes), as much as nsbox needs.

LINKTYPE_LINUX_SLL is what libpcap records for `-i any`: a 16-byte cooked
header (direction, link type, source link address, protocol) before the
network-layer packet, so one file can hold packets from every interface.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

MAGIC = 0xA1B2C3D4          # microsecond timestamps; written in native byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
SNAPLEN = 262144

_HEADER = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


def write_header(f: BinaryIO, linktype: int = LINKTYPE_LINUX_SLL) -> None:
    f.write(_HEADER.pack(MAGIC, 2, 4, 0, 0, SNAPLEN, linktype))


def write_packet(f: BinaryIO, ts: float, data: bytes) -> None:
    sec = int(ts)
    f.write(_RECORD.pack(sec, int((ts - sec) * 1_000_000), len(data), len(data)))
    f.write(data)


def sll_header(pkttype: int, hatype: int, addr: bytes, protocol: int) -> bytes:
    """The cooked header: fields in network byte order, as libpcap writes them."""
    return struct.pack("!HHH8sH", pkttype, hatype, len(addr[:8]), addr[:8].ljust(8, b"\0"), protocol)


@dataclass(frozen=True)
class Record:
    ts: float
    data: bytes


def read(f: BinaryIO) -> tuple[int, Iterator[Record]]:
    """(linktype, records) of a classic pcap file, either byte order; ValueError if it is not one."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise ValueError("too short for a pcap header")
    for order in "<>":
        magic = struct.unpack(order + "I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError(f"not a pcap file (magic {head[:4].hex()})")
    nano = magic == 0xA1B23C4D
    _, _, _, _, _, _, linktype = struct.unpack(order + "IHHiIII", head)
    rec = struct.Struct(order + "IIII")

    def records() -> Iterator[Record]:
        while True:
            h = f.read(rec.size)
            if len(h) < rec.size:
                return
            sec, frac, incl, _ = rec.unpack(h)
            yield Record(sec + frac / (1e9 if nano else 1e6), f.read(incl))

    return linktype, records()
