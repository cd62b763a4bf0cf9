"""Cluster DNS: CoreDNS behind the kube-dns Service, as kubeadm deploys it (`--set mode=iptables|nftables`).

A two-node cluster (flannel host-gw layout) with the cluster DNS (nsbox/kits/k8s/dns.py): a
coredns pod in kube-system on node1 behind the Service kube-system/kube-dns on 10.96.0.10
(kube-proxy's rules DNAT it like any ClusterIP), answering from the cluster's Services and
pods; every other pod's /etc/resolv.conf is kubelet's (`nameserver 10.96.0.10`, `search
default.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`), which
`nsbox up service-dns` then `nsbox exec LAB client -- getent hosts web` / `curl http://web` /
`dig web.default.svc.cluster.local` use as in a cluster.

Objects: `web` (ClusterIP, ports http 80 -> 8080 and echo 7 -> 7007),
three web pods; `db` headless (clusterIP None) over a StatefulSet-style pair db-0, db-1
(hostname db-N, subdomain db); `ext` ExternalName www.example.com; a client pod.

The checks ask the DNS Service from the client pod (the query crosses kube-proxy's DNAT
to the coredns pod on the other node), one per record form of the DNS spec:
web A = its ClusterIP; SRV _http._tcp.web; PTR of the ClusterIP; db A = both pods;
db-0.db A = db-0; SRV _pg._tcp.db = one per endpoint (weight 50); ext CNAME; a pod's
a-b-c-d.default.pod name; dns-version TXT; a Service that does not exist = NXDOMAIN.
Then HTTP to the address the DNS answered for web reaches one of its endpoints.
"""

from nsbox.kits import k8s
from nsbox.model import Lab
from nsbox.recipe import Param, recipe

WEB = ("web-1", "web-2", "web-3")
Z = "cluster.local"


@recipe("service-dns", params=[
    Param("mode", "iptables", "kube-proxy's mode: iptables or nftables", choices=k8s.PROXY_MODES),
])
def build(lab: Lab, mode: str = "iptables") -> None:
    """Cluster DNS (CoreDNS's record forms) behind kube-dns 10.96.0.10; pods get kubelet's resolv.conf."""
    k = k8s.Cluster(lab, cni="bridge", masq="flannel", mode=mode)
    n1, n2 = k.node("node1", "10.244.1.0/24"), k.node("node2", "10.244.2.0/24")
    dns = k.cluster_dns(n1)
    for name, node in zip(WEB, (n1, n1, n2)):
        k.pod(node, name, labels={"app": "web"}).serve("http", 8080)
    for i, node in enumerate((n1, n2)):
        k.pod(node, f"db-{i}", labels={"app": "db"}, hostname=f"db-{i}", subdomain="db").serve("tcp", 5432)
    client = k.pod(n2, "client")

    web = k.service("web", [k8s.Port(80, 8080, name="http"), k8s.Port(7, 7007, name="echo")],
                    selector={"app": "web"})
    k.service("db", k8s.Port(5432, name="pg"), selector={"app": "db"}, cluster_ip="None")
    k.service("ext", [], type="ExternalName", external_name="www.example.com")

    db = [k.pod_ip("db-0"), k.pod_ip("db-1")]
    c = client
    dns.expect(c, f"web.default.svc.{Z}", web.cluster_ip, check_name="dns client: web A (ClusterIP)")
    dns.expect(c, f"_http._tcp.web.default.svc.{Z}", f"0 100 80 web.default.svc.{Z}.", qtype="SRV",
               check_name="dns client: web SRV _http._tcp (named port)")
    dns.expect(c, f"_echo._tcp.web.default.svc.{Z}", f"0 100 7 web.default.svc.{Z}.", qtype="SRV",
               check_name="dns client: web SRV _echo._tcp")
    dns.expect(c, k8s.reverse(web.cluster_ip), f"web.default.svc.{Z}.", qtype="PTR",
               check_name="dns client: PTR of web's ClusterIP")
    dns.expect(c, f"db.default.svc.{Z}", db, check_name="dns client: db A (headless: both endpoints)")
    dns.expect(c, f"db-0.db.default.svc.{Z}", db[0], check_name="dns client: db-0.db A (StatefulSet pod)")
    dns.expect(c, f"_pg._tcp.db.default.svc.{Z}",
               [f"0 50 5432 db-{i}.db.default.svc.{Z}." for i in range(2)], qtype="SRV",
               check_name="dns client: db SRV _pg._tcp (one per endpoint)")
    dns.expect(c, k8s.reverse(db[1]), f"db-1.db.default.svc.{Z}.", qtype="PTR",
               check_name="dns client: PTR of db-1 (headless endpoint)")
    dns.expect(c, f"ext.default.svc.{Z}", "www.example.com.", qtype="CNAME",
               check_name="dns client: ext CNAME (ExternalName)")
    dns.expect(c, f"{k8s.dashed(k.pod_ip('web-3'))}.default.pod.{Z}", k.pod_ip("web-3"),
               check_name="dns client: web-3's pod A record")
    dns.expect(c, f"dns-version.{Z}", '"1.1.0"', qtype="TXT", check_name="dns client: dns-version TXT")
    dns.expect(c, f"nothere.default.svc.{Z}", None, check_name="dns client: no such Service (NXDOMAIN)")
    # HTTP to the address the DNS answers for web: one of its endpoints serves.
    lab.expect(c, web, "http", 80, answered_by=WEB, name="http client->web (the address DNS answered)")
