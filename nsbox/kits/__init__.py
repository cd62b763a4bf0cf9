"""Kits: builders for whole systems (a Docker host, a Kubernetes node, a LAN) on top of the
model's builder steps, so that a rule lives in one place and recipes stay short."""
