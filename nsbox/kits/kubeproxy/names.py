"""Chain and set names, hashed exactly as kube-proxy hashes them.

iptables (pkg/proxy/iptables/proxier.go, portProtoHash / servicePortEndpointChainName):
  KUBE-SVC-|SVL-|EXT-|FW- + base32(sha256("ns/name:port" + proto))[:16]
  KUBE-SEP-              + base32(sha256("ns/name:port" + proto + "ip:port"))[:16]
nftables (pkg/proxy/nftables/proxier.go, hashAndTruncate):
  service-|local-|external-|firewall- + H-ns/name/proto/port
  endpoint-|affinity-                 + H-ns/name/proto/port__ip/port   (IPv6 ':' -> '.')
  with H = base32(sha256(the text after "H-"))[:8], the whole base cut to 240 characters.
"""

from __future__ import annotations

import base64
import hashlib

from nsbox.kits.kubeproxy.model import EndpointInfo, PortInfo


def _b32(text: str, chars: int) -> str:
    """The first CHARS (a multiple of 8) of base32(sha256(TEXT)): 5 digest bytes per 8."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:chars * 5 // 8]).decode()


# --- iptables -----------------------------------------------------------------------------

def port_proto_hash(port: PortInfo) -> str:
    return chain_hash(port.name, port.protocol)


def chain_hash(service_port: str, protocol: str) -> str:
    """The suffix of KUBE-SVC-/SVL-/EXT-/FW- for "NS/NAME:PORTNAME" and "tcp" (a recipe
    naming one of kube-proxy's rules, e.g. for dropped_by)."""
    return _b32(service_port + protocol, 16)


def svc_chain(port: PortInfo) -> str:
    return "KUBE-SVC-" + port_proto_hash(port)


def svl_chain(port: PortInfo) -> str:
    return "KUBE-SVL-" + port_proto_hash(port)


def ext_chain(port: PortInfo) -> str:
    return "KUBE-EXT-" + port_proto_hash(port)


def fw_chain(port: PortInfo) -> str:
    return "KUBE-FW-" + port_proto_hash(port)


def sep_chain(port: PortInfo, ep: EndpointInfo) -> str:
    return "KUBE-SEP-" + _b32(port.name + port.protocol + ep.text, 16)


IPTABLES_SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")


def is_iptables_service_chain(name: str) -> bool:
    return name.startswith(IPTABLES_SERVICE_PREFIXES)


# --- nftables -----------------------------------------------------------------------------

NFT_CHAIN_BASE_MAX = 256 - 16  # knftables.NameLengthMax - chainNamePrefixLengthMax


def _hash_and_truncate(name: str) -> str:
    name = _b32(name, 8) + "-" + name
    if len(name) > NFT_CHAIN_BASE_MAX:
        name = name[:NFT_CHAIN_BASE_MAX - 3] + "..."
    return name


def nft_port_base(port: PortInfo) -> str:
    return _hash_and_truncate(f"{port.namespace}/{port.service}/{port.protocol}/{port.port_name}")


def nft_endpoint_base(port: PortInfo, ep: EndpointInfo) -> str:
    ip = str(ep.ip).replace(":", ".")
    return _hash_and_truncate(f"{port.namespace}/{port.service}/{port.protocol}/{port.port_name}__{ip}/{ep.port}")
