"""Property: for random pods' labels, namespaces' labels, named ports and NetworkPolicies
(hypothesis), the kube-router renderer's rules on the real kernel give the same truth table
as the simulator (written from the API semantics). A bounded number of examples, each one
sync into the module's node and the 72 ordered pod pairs probed on one port/protocol.
"""

from __future__ import annotations

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a test extra (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support.kernel import IS_ROOT, NEEDS_ROOT  # noqa: E402
from tests.support.netpol_lab import lab_up, observe, sync  # noqa: E402
from nsbox.kits.netpol import PODS, Cluster, parse_policy, render_tables, tables, truth_table  # noqa: E402
from nsbox.kits.netpol.cases import NAMESPACES, model_cluster  # noqa: E402
from nsbox.kits.netpol.kuberouter import render  # noqa: E402
from nsbox.kits.netpol.model import ContainerPort  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT),
              pytest.mark.tools("ipset", "iptables-restore", "conntrack")]

# NSBOX_NETPOL_EXAMPLES=400 for a longer hunt (random seeds with NSBOX_NETPOL_RANDOM=1)
EXAMPLES = int(os.environ.get("NSBOX_NETPOL_EXAMPLES", "30"))
DERANDOMIZE = os.environ.get("NSBOX_NETPOL_RANDOM") != "1"

# Small vocabularies, so selectors often match something.
label_sets = st.fixed_dictionaries({}, optional={"pod": st.sampled_from(["a", "b", "c"]),
                                                 "role": st.sampled_from(["web", "db"])})
ns_label_sets = st.fixed_dictionaries({}, optional={"team": st.sampled_from(["red", "blue"])})


@st.composite
def selectors(draw):
    kind = draw(st.sampled_from(["empty", "labels", "expr"]))
    if kind == "empty":
        return {}
    if kind == "labels":
        return {"matchLabels": draw(st.dictionaries(st.sampled_from(["pod", "role"]),
                                                    st.sampled_from(["a", "b", "web", "db"]), min_size=1,
                                                    max_size=2))}
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    e = {"key": draw(st.sampled_from(["pod", "role"])), "operator": op}
    if op in ("In", "NotIn"):
        e["values"] = draw(st.lists(st.sampled_from(["a", "b", "c", "web"]), min_size=1, max_size=2, unique=True))
    return {"matchExpressions": [e]}


@st.composite
def ns_selectors(draw):
    kind = draw(st.sampled_from(["empty", "team", "name"]))
    if kind == "empty":
        return {}
    if kind == "team":
        return {"matchLabels": {"team": draw(st.sampled_from(["red", "blue"]))}}
    return {"matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(NAMESPACES))}}


@st.composite
def peers(draw):
    kind = draw(st.sampled_from(["pod", "ns", "both", "ipblock"]))
    if kind == "pod":
        return {"podSelector": draw(selectors())}
    if kind == "ns":
        return {"namespaceSelector": draw(ns_selectors())}
    if kind == "both":
        return {"podSelector": draw(selectors()), "namespaceSelector": draw(ns_selectors())}
    cidr = draw(st.sampled_from(["10.0.0.0/16", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.2/32"]))
    block = {"cidr": cidr}
    if cidr == "10.0.0.0/16" and draw(st.booleans()):
        block["except"] = [draw(st.sampled_from(["10.0.1.0/24", "10.0.2.2/32", "10.0.3.0/30"]))]
    return {"ipBlock": block}


@st.composite
def ports(draw):
    proto = draw(st.sampled_from(["TCP", "UDP"]))
    kind = draw(st.sampled_from(["any", "number", "range", "named"]))
    if kind == "any":
        return {"protocol": proto}
    if kind == "number":
        return {"protocol": proto, "port": draw(st.sampled_from([80, 81]))}
    if kind == "range":
        return {"protocol": proto, "port": 79, "endPort": draw(st.sampled_from([80, 81]))}
    return {"protocol": proto, "port": "http"}


def rules(peer_key: str):
    return st.lists(st.fixed_dictionaries({}, optional={peer_key: st.lists(peers(), max_size=2),
                                                        "ports": st.lists(ports(), max_size=2)}), max_size=2)


@st.composite
def policies(draw, i: int):
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    spec = {"podSelector": draw(selectors()), "policyTypes": types}
    if "Ingress" in types:
        spec["ingress"] = draw(rules("from"))
    if "Egress" in types:
        spec["egress"] = draw(rules("to"))
    return draw(st.sampled_from(NAMESPACES)), {"metadata": {"name": f"p{i}"}, "spec": spec}


class Drawn:
    """A generated cluster; its repr (what hypothesis prints for a failing example) is the
    input as a person would write it: labels, http port numbers, policy objects."""

    def __init__(self, cluster: Cluster, inputs: dict) -> None:
        self.cluster, self.inputs = cluster, inputs

    def __repr__(self) -> str:
        return json.dumps(self.inputs, sort_keys=True)


@st.composite
def clusters(draw) -> Drawn:
    c = model_cluster([80, 81], ["TCP", "UDP"])
    inputs: dict = {"namespaces": {}, "pods": {}, "policies": []}
    for ns in c.namespaces.values():
        ns.labels.update(draw(ns_label_sets))
        inputs["namespaces"][ns.name] = ns.labels
    for pod in c.pods.values():
        pod.labels = draw(label_sets)
        # "http" names port 80 on some pods and 81 on others: named ports resolve per pod
        http = draw(st.sampled_from([80, 81]))
        pod.ports = pod.ports + (ContainerPort("http", http, "TCP"), ContainerPort("http", http, "UDP"))
        inputs["pods"][pod.key] = {"labels": pod.labels, "http": http}
    for i in range(draw(st.integers(1, 3))):
        ns, obj = draw(policies(i))
        c.apply(parse_policy(obj, ns))
        inputs["policies"].append({"namespace": ns, **obj})
    return Drawn(c, inputs)


class Quiet:
    """The lab handle, with a one-word repr in hypothesis' failure report."""

    def __init__(self, handle) -> None:
        self._h = handle

    def __getattr__(self, name: str):
        return getattr(self._h, name)

    def __repr__(self) -> str:
        return "<the module's kube-router node>"


@pytest.fixture(scope="module")
def node():
    for handle in lab_up():
        yield Quiet(handle)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cluster=clusters(), port=st.sampled_from([80, 81]), protocol=st.sampled_from(["TCP", "UDP"]))
def test_simulator_and_kernel_agree(node, cluster, port, protocol):
    sync(node, render(cluster.cluster, strict=True))
    observed = observe(node, port, protocol)
    simulated = truth_table(cluster.cluster, list(PODS), port, protocol)
    t = tables(f"random policies {port}/{protocol} (simulator vs kernel)", list(PODS), simulated, observed)
    assert t["incorrect"] == 0, render_tables(t) + f"\ninput: {cluster!r}"
