"""kube-proxy's rule writers as pure renderers.

A port of kube-proxy's `syncProxyRules` for both proxy modes (kubernetes/kubernetes
pkg/proxy/iptables/proxier.go @ 531be812 and pkg/proxy/nftables/proxier.go @ 81810de6, the
commits of the reference dumps in tests/data/kube-proxy): given what kube-proxy knows
(Services, EndpointSlices, its own settings) they return the text kube-proxy hands the
kernel. No kernel, no model of packets: callers apply the text, tests compare it with
kube-proxy's own expected dumps.

- `model`: the API objects (`Service`, `ServicePort`, `EndpointSlice`, `Endpoint`) and the
  proxier's settings (`ProxierConfig`), kube-proxy's per-port view and
  `CategorizeEndpoints` (ready / serving / terminating, local, traffic policies).
- `names`: chain and set names, hashed as kube-proxy hashes them.
- `iptables.render(...)`: one sync's `iptables-restore` payload; `iptables.Proxier` keeps
  the state between syncs (partial syncs of changed Services only, stale chains deleted
  with `-X`, a failed restore forcing a full sync); `jump_rules()`; `sort_restore()` is
  upstream's test normalisation (sortIPTablesRules).
- `nftables.render(...)`: the `ip kube-proxy` table as `nft` commands (`.text()` is
  `nft -f` input); `nftables.Proxier` keeps flushed stale chains until they are a second
  old; `sort_transaction()` is upstream's sortNFTablesTransaction, `loadable()` reorders
  an upstream dump for `nft -f`.
"""

from nsbox.kits.kubeproxy.model import (Endpoint, EndpointSlice, EndpointSlicePort, ProxierConfig, Service,
                                        ServicePort, load_scenario)

__all__ = ["Endpoint", "EndpointSlice", "EndpointSlicePort", "ProxierConfig", "Service", "ServicePort",
           "load_scenario"]
