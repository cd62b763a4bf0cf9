"""sctp: an SCTP association to PORT (one-to-one style socket), a token line echoed back.

Kubernetes Services and NetworkPolicies take protocol SCTP beside TCP and UDP; kube-proxy
DNATs it like the others (`-p sctp`). The probe and the echo server are tcp's over an
IPPROTO_SCTP stream socket. A kernel without SCTP (CONFIG_IP_SCTP off, or the module not
loadable: socket() fails with EPROTONOSUPPORT) lacks the feature "sctp", which a lab
with an sctp check requires: the recipe SKIPs with the reason."""

from __future__ import annotations

import socket

from nsbox.kinds.protocols import TRANSPORTS, Protocol, Serving, register
from nsbox.kinds.protocols.tcp import echo, stream_probe

IPPROTO_SCTP = TRANSPORTS["sctp"]  # 132; socket.IPPROTO_SCTP where Python was built with it


def feature() -> None:
    """Raises OSError (EPROTONOSUPPORT) where the kernel has no SCTP (run in a scratch netns)."""
    socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP).close()


PROTOCOL = register(Protocol(
    name="sctp", transport="sctp", summary="an SCTP association, echo a line (sctp server)",
    probe=stream_probe(IPPROTO_SCTP), answers=("sctp",),
    serving=Serving(socket.SOCK_STREAM, IPPROTO_SCTP, on_data=echo),
    conntrack=False,  # nsbox's conntrack reader names tcp, udp and icmp entries only
    feature=feature, kernel_modules=("sctp",)))
