"""`nsbox run ./app.yaml` without the kernel (nsbox/kits/k8s/manifests.py): objects become a
cluster model with the checks the objects promise, objects nsbox does not model are named
one line each, and untrusted input (bad YAML, Python tags, a FIFO, a huge file, bad names,
unknown fields) is refused in one line (exit 2) before anything is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsbox.errors import NsboxError
from nsbox.kits.k8s import manifests
from nsbox.model import ReachCheck
from nsbox.validate import validate
from tests.support import paths

REPO = paths.REPO
EXAMPLES = REPO / "recipes" / "manifests"

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: x, ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: x}]
"""


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def build(path: str, **params):
    r = manifests.recipe_for(path)
    lab = r.build({k: str(v) for k, v in params.items()})
    validate(lab)
    return lab


def test_a_deployment_and_its_service_become_pods_an_endpointslice_and_checks(tmp_path) -> None:
    lab = build(write(tmp_path, DEPLOY), nodes=2)
    assert lab.name == "app"
    assert {"web-0", "web-1", "client", "coredns", "node1", "node2"} <= set(lab.nodes)
    reach = {c.name: c for c in lab.checks if isinstance(c, ReachCheck)}
    c = reach["tcp client -> service default/web:80"]
    assert c.dst == "10.96.0.11" and c.port == 80 and c.answered_by == frozenset({"web-0", "web-1"})
    assert reach["dns: web.default.svc"].expected == "answer 10.96.0.11"
    # the targetPort named http resolved to 8080, served by both replicas
    assert all(any(s.port == 8080 for s in lab.nodes[p].servers) for p in ("web-0", "web-1"))
    assert lab.nodes["web-1"].resolver.nameservers == ("10.96.0.10",)


def test_objects_not_modelled_are_named_one_line_each(tmp_path) -> None:
    text = DEPLOY + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n---\n" \
                    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing}\n"
    path = write(tmp_path, text)
    code = ("import sys; from nsbox.kits.k8s import manifests; "
            f"manifests.recipe_for({path!r}).build({{}})")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2 and "ConfigMap cfg: not modelled" in lines[0] and "Ingress ing: not modelled" in lines[1]


def test_policies_give_the_simulators_truth_table_and_kube_router_rules() -> None:
    lab = build(str(EXAMPLES / "guestbook-policy.yaml"))
    assert {m.name for m in lab.matrices} == {"policy 80/TCP", "policy 8080/TCP", "policy 6379/TCP"}
    reach = {c.name: c for c in lab.checks if isinstance(c, ReachCheck)}
    assert reach["tcp frontend-0 -> service data/store:6379 (denied by policy)"].allow is False
    assert reach["tcp backend -> service data/store:6379"].answered_by == frozenset({"store.data"})
    assert reach["policy 8080/TCP: store.data->backend"].allow is False
    assert reach["policy 8080/TCP: frontend-1->backend"].allow is True
    node_rules = [r.render() for n in ("node1", "node2") for r in lab.nodes[n].iptables("filter").chains["FORWARD"].rules]
    assert node_rules[0].endswith("-j KUBE-ROUTER-FORWARD")  # inserted at the top, as kube-router does
    assert any(lab.nodes[n].ipsets for n in ("node1", "node2"))


@pytest.mark.parametrize("text, message", [
    ("kind: Pod\n", "has no apiVersion"),
    ("a: [\n", r"not YAML \(line"),
    ("!!python/object/apply:os.system ['true']\n", "not YAML"),
    ("- 1\n", "an object is a mapping"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c}]}\n", "not a valid name"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: other}\nspec: {containers: [{name: c}]}\n",
     "namespace other is used but no Namespace"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 0}]}]}\n",
     "containerPort is an integer 1-65535"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {'a b': c}}\nspec: {containers: [{name: c}]}\n",
     "not a valid label"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n", "without a selector"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {a: b}, ports: [{port: 80, protocol: SCTP}]}\n",
     "not TCP or UDP"),
    ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {bogus: 1}\n",
     "spec has podSelector"),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "no pods"),
    (DEPLOY.replace("replicas: 2", "replicas: 999"), "spec.replicas is an integer 0-20"),
    (DEPLOY + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0}\nspec: {containers: [{name: c}]}\n",
     "pod default/web-0 twice"),
])
def test_bad_manifests_are_refused_in_one_line(tmp_path, text, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(NsboxError, match=message) as e:
        manifests.recipe_for(path)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_what_is_no_manifest_file_is_refused(tmp_path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(NsboxError, match="not a regular file"):  # and it does not hang
        manifests.read(str(fifo))
    big = write(tmp_path, "#" * (manifests.MAX_BYTES + 1), "big.yaml")
    with pytest.raises(NsboxError, match="larger than"):
        manifests.read(big)
    with pytest.raises(NsboxError, match="No such file"):
        manifests.read(str(tmp_path / "none.yaml"))
    with pytest.raises(NsboxError, match="bad recipe name"):
        manifests.recipe_for(write(tmp_path, DEPLOY, "Bad Name!.yaml"))
    assert manifests.is_manifest("./app.YAML") and manifests.is_manifest("x.json")
    assert not manifests.is_manifest("service-dns") and not manifests.is_manifest("x.py")


def test_json_lists_and_the_cli_path(tmp_path) -> None:
    import json

    import yaml

    items = [d for d in yaml.safe_load_all(DEPLOY)]
    path = write(tmp_path, json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), "app.json")
    lab = build(path)
    assert "web-1" in lab.nodes
    p = subprocess.run([sys.executable, "-m", "nsbox", "validate", path], capture_output=True, text=True, cwd=REPO,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    bad = write(tmp_path, "kind: [\n", "bad.yaml")
    p = subprocess.run([sys.executable, "-m", "nsbox", "run", bad], capture_output=True, text=True, cwd=REPO,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_nodeport_service_is_checked_on_every_nodes_address() -> None:
    lab = build(str(EXAMPLES / "web-app.yaml"), nodes=3)
    reach = [c for c in lab.checks if isinstance(c, ReachCheck) and "nodePort of default/web-nodeport" in c.name]
    assert sorted(c.dst for c in reach) == ["192.168.70.11", "192.168.70.12", "192.168.70.13"]
    assert all(c.port == 30080 and c.answered_by == frozenset({"web-0", "web-1", "web-2"}) for c in reach)
