"""kube-proxy's rule writers as pure renderers (placeholder docstring)."""
