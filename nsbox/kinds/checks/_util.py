"""Small helpers the check kinds share (not a kind: discovery skips "_" modules)."""

from __future__ import annotations

import ipaddress
import time


def hostport(ip: str, port: int | None) -> str:
    """ip:port as URLs write it: an IPv6 address in brackets ([fd00::2]:80)."""
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def same_ip(a: str, b: str) -> bool:
    """One address however it is written (fd00:0::1 and fd00::1 are the same)."""
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)
