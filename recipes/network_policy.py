"""NetworkPolicy as kube-router enforces it, one of the Kubernetes e2e's 48 cases (`--set case=NAME`).

The e2e's model: namespaces x, y, z with pods a, b, c each (labels pod=a|b|c, ns=x|y|z), all on
one node bridged by kube-bridge (kube-router's bridge; bridged traffic passes FORWARD through
br_netfilter), each pod serving the case's ports over tcp and udp at 10.0.<ns>.<pod>. The case's
policies (and label changes, for the multi-step cases) are applied to the netpol kit's model up
to the step chosen (`--set step=N`, default the last), and the node gets one full sync of
kube-router's network-policy controller as nsbox.kits.netpol.kuberouter writes it: the ipsets
(KUBE-SRC-*/KUBE-DST-* hash:ip, hash:net with `nomatch` for an ipBlock's except) and the filter
table (KUBE-ROUTER-FORWARD, KUBE-POD-FW-* per pod, KUBE-NWPLCY-* per policy, REJECT for what no
policy admits).

Every probe of that step is one matrix of real connections between the nine pods (the
diagonal left out, as the e2e does), expected as the e2e's own truth table for the step says;
the report prints expected / observed / comparison as the e2e prints them. A step that
probes only SCTP is sent over SCTP (the pods serve it too), so it needs the kernel's sctp
and SKIPs where that is missing; in a step that mixes protocols the TCP and UDP probes are
sent (one recipe, one verdict on every kernel).
"""

from pathlib import Path

from nsbox.errors import ValidationError
from nsbox.kits.netpol import PODS, Scenario, load_cases
from nsbox.kits.netpol.kuberouter import kube_router_node, node_of, render
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

CASES = {c.id: c for c in load_cases(Path(__import__("nsbox.kits.netpol", fromlist=["x"]).__file__).parent
                                     / "cases.json")}
DEFAULT = "allow-from-podselector-same-ns"


@recipe("network-policy", params=[
    Param("case", DEFAULT, "one of the e2e's NetworkPolicy cases (nsbox/kits/netpol/cases.json)",
          choices=tuple(CASES)),
    Param("step", "last", "the case's step whose policies and probes to use: 1..N or last"),
])
def build(lab: Lab, case: str = DEFAULT, step: str = "last") -> None:
    """NetworkPolicy by kube-router's iptables+ipsets, an e2e case's truth table on the kernel."""
    scenario = Scenario(CASES[case])
    n_steps = len(scenario.case.steps)
    if step == "last":
        want = n_steps
    elif step.isdigit() and 1 <= int(step) <= n_steps:
        want = int(step)
    else:
        raise ValidationError(f"network-policy: case {case} has steps 1-{n_steps}, not {step!r}")
    chosen = None
    for s in scenario.steps():  # the actions of every step up to the one chosen
        if s.index == want:
            chosen = s
            break
    assert chosen is not None
    probes = [p for p in chosen.probes if p.protocol in ("TCP", "UDP")] or list(chosen.probes)
    sctp = any(p.protocol == "SCTP" for p in probes)
    lab.description = f"NetworkPolicy e2e case {case} (step {want} of {n_steps}): {scenario.case.title}"
    lab.require("ipset", *(["sctp"] if sctp else []))
    node = kube_router_node(lab, scenario.case.ports, ("tcp", "udp", "sctp") if sctp else ("tcp", "udp"))

    rendered = render(scenario.cluster, version=str(want))
    rendered.install(node)  # its ipsets, then its filter chains and rules, -I lines in place

    names = [node_of(k) for k in PODS]
    for p in probes:
        expected = {(node_of(s), node_of(d)): ok for (s, d), ok in p.expected.items()}
        lab.expect_matrix(names, p.protocol.lower(), p.port, expected=expected,
                          name=f"{case} step {want} {p.port}/{p.protocol}")
