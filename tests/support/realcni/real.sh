#!/bin/bash
# real.sh SCENARIO OUT: run the REAL CNI plugins (/usr/lib/cni) in a throwaway node:
# `unshare --net --mount --pid`, pod netns bind-mounted on a tmpfs of that mount ns only,
# IPAM state in a temp dir removed at the end; then dump.sh the node and its pods.
# The node looks like nsbox's (tests/support/realcni/recipes.py): eth0 192.168.70.2/24, default
# via 192.168.70.1 (a veth whose far end upstream0 stays in the node: no second netns).
# Adapted from the project's own cni_probe.sh probe of the real plugins (same licence).
set -euo pipefail
CNI=${CNI_DIR:-/usr/lib/cni}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = "--inner" ]; then
  scenario=$2 out=$3 S=$4
  mount -t tmpfs tmpfs /run
  mkdir -p "$S/ns" && mount -t tmpfs tmpfs "$S/ns"
  ip link set lo up
  ip link add eth0 type veth peer name upstream0
  ip addr add 192.168.70.2/24 brd + dev eth0  # with its broadcast, as nsbox adds addresses
  ip link set eth0 up; ip link set upstream0 up
  ip route add default via 192.168.70.1
  mkpod() { touch "$S/ns/$1"; unshare --net="$S/ns/$1" true; }
  plugin() { env CNI_COMMAND=ADD CNI_CONTAINERID="id-$2" CNI_NETNS="$S/ns/$2" CNI_IFNAME="$3" CNI_PATH="$CNI" \
                 "$CNI/$1" | if [ -n "${CNI_OUT:-}" ]; then cat; else cat >/dev/null; fi; }
  lo() { echo '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}' | plugin loopback "$1" lo; }
  case $scenario in
    bridge)
      conf='{"cniVersion":"1.0.0","name":"testnet","type":"bridge","bridge":"cni0","isGateway":true,
             "ipMasq":true,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]],
             "routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'"$S"'/ipam"}}'
      name=testnet type=bridge pods="pod1 pod2";;
    ptp)
      conf='{"cniVersion":"1.0.0","name":"ptpnet","type":"ptp","ipMasq":true,"mtu":1500,
             "ipam":{"type":"host-local","ranges":[[{"subnet":"10.89.0.0/24"}]],
             "routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'"$S"'/ipam"}}'
      name=ptpnet type=ptp pods="pod1 pod2";;
    *) echo "unknown scenario $scenario" >&2; exit 2;;
  esac
  # portmap chained for pod1 (hostPort 8080 -> 80/tcp), as a conflist runs it after the main plugin.
  portmap_conf() {  # $1: the network name, $2: the main plugin's result (prevResult)
    printf '{"cniVersion":"1.0.0","name":"%s","type":"portmap","capabilities":{"portMappings":true},' "$1"
    printf '"prevResult":%s,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}' "$2"; }
  for p in $pods; do
    mkpod "$p"; lo "$p"
    result=$(echo "$conf" | CNI_OUT=1 plugin "$type" "$p" eth0)
    if [ "$p" = pod1 ]; then portmap_conf "$name" "$result" | plugin portmap "$p" eth0; fi
  done
  # shellcheck disable=SC2317  # called by dump.sh
  in_ns() { local ns=$1; shift; if [ "$ns" = node ]; then "$@"; else nsenter --net="$S/ns/$ns" "$@"; fi; }
  export -f in_ns; export S
  # shellcheck source=tests/support/realcni/dump.sh
  # shellcheck disable=SC2086  # $pods: a word list
  . "$HERE/dump.sh" "$out" node $pods
  # The same traffic nsbox's recipe checks: pod1 -> pod2 and node -> pod1 (ping, one try each).
  ip1=$(nsenter --net="$S/ns/pod1" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
  ip2=$(nsenter --net="$S/ns/pod2" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
  { nsenter --net="$S/ns/pod1" ping -c1 -W2 "$ip2" >/dev/null && echo "pod1->pod2 ok" || echo "pod1->pod2 FAIL"
    ping -c1 -W2 "$ip1" >/dev/null && echo "node->pod1 ok" || echo "node->pod1 FAIL"; } > "$out/reach"
  # hostPort 8080 -> pod1:80: a server in pod1, curl from pod2, the node (its address and
  # 127.0.0.1) and pod1 itself (hairpin).
  mkdir -p "$S/www" && echo hello-from-pod1 > "$S/www/index.html"
  nsenter --net="$S/ns/pod1" busybox httpd -f -p 80 -h "$S/www" & httpd=$!
  sleep 0.3
  for pair in pod2:192.168.70.2 node:192.168.70.2 node:127.0.0.1 pod1:192.168.70.2; do
    src=${pair%%:*} dst=${pair#*:}
    got=$(in_ns "$src" curl -s -m 3 "http://$dst:8080/" || echo FAIL)
    echo "hostport $src->$dst $got" >> "$out/reach"
  done
  kill "$httpd"; wait "$httpd" 2>/dev/null || true
  exit 0
fi
scenario=$1 out=$2
S=$(mktemp -d "${TMPDIR:-/tmp}/nsbox-realcni.XXXXXX")
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/ipam"
unshare --net --mount --pid --fork --kill-child --mount-proc --propagation private \
  bash "$0" --inner "$scenario" "$out" "$S"
