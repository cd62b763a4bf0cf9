"""Docker 29's bridge-network firewall as pure renderers.

A port of moby's `daemon/libnetwork/drivers/bridge/internal/{iptabler,nftabler}` (moby
b985e2313a, the commit Docker's golden test outputs in tests/data/docker29 come from):
given what dockerd knows (daemon options, networks, endpoints, port bindings) they return the
text `iptables-save` / `nft list table` prints once dockerd has installed its rules. No model,
no kernel: the docker kit applies the text, tests compare it with Docker's own goldens.

- `config`: what dockerd knows, named as moby's `firewaller` package names it.
- `iptables.render(...)`: per-table `iptables-save` lines (the iptabler), plus
  `iptables.daemon_rules(...)` for the parts other parts of dockerd add (DOCKER-USER, FORWARD
  policy DROP), and the Docker 20.10 layout (`layout="20.10"`).
- `legacy`: the 20.10 layout behind `iptables.render(..., layout="20.10")`.
- `xtables`: the vocabulary both iptables layouts share (tables, chain names, `Ruleset`,
  iptables-save spellings); `legacy` imports it, not `iptables`, so the two form no circle.
- `resolver`: the embedded DNS server's NAT rules inside a user-network container
  (DOCKER_OUTPUT / DOCKER_POSTROUTING, or nft table docker-dns).
- `nftables.render(...)`: `nft list table ip|ip6 docker-bridges` (the nftabler);
  `nftables.loadable()` for `nft -f` on nft < 1.0.7.
"""

from nsbox.kits.dockerfw.config import DaemonConfig, Endpoint, Network, NetworkConfig, PortBinding

__all__ = ["DaemonConfig", "Endpoint", "Network", "NetworkConfig", "PortBinding"]
