#!/bin/bash
# The inside of the throwaway namespace the real dockerd runs in. Started by
# tests/support/realdocker/dockerd.py as
#   unshare --net --mount --pid --fork --kill-child --mount-proc --propagation private \
#       bash dockerns.sh STATE CGROUP_PARENT USERLAND_PROXY
# This bash is pid 1 of a new pid namespace: when it exits, the kernel kills
# every process in it (dockerd, containerd, shims, containers, the netns pins
# below), and the mount namespace with its tmpfs and overlay mounts goes too.
#
# Network layout (the addresses of recipes/bridge_mode.py):
#   this netns  = the Docker host: eth0 203.0.113.2/24 (uplink), eth1 198.51.100.1/24
#   "internet"  = an `unshare --net sleep` here: eth0 203.0.113.1/24, routes the
#                 container subnet and the LAN via the host (direct routing); the
#                 containers' upstream DNS server (resolv.conf)
#   "lan"       = likewise: eth0 198.51.100.2/24, default via the host
# It prints "pids host=.. internet=.. lan=.." (pids in THIS pid namespace) and
# "ready", then waits for EOF on stdin, then stops dockerd and exits.
set -euo pipefail
S=$1; CG=$2; PROXY=$3

mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /etc/docker
# Containers' upstream DNS is the lab's "internet" node, not the machine's resolver:
# dockerd copies /etc/resolv.conf into containers, and its embedded DNS forwards
# the names it does not know there. (Mounted on the file the link points to, if it
# is one: under /run, that is the tmpfs above.)
printf 'nameserver 203.0.113.1\n' >"$S/resolv.conf"
RESOLV=$(readlink -f /etc/resolv.conf)
case "$RESOLV" in /run/*) mkdir -p "$(dirname "$RESOLV")"; : >"$RESOLV";; esac
mount --bind "$S/resolv.conf" "$RESOLV"
ip link set lo up

pin() { unshare --net -- sleep infinity </dev/null >/dev/null 2>&1 & echo $!; }
INET=$(pin); LAN=$(pin)
# wait until both have entered their own netns (unshare runs before exec of sleep)
for p in $INET $LAN; do
  for _ in $(seq 50); do [ "$(readlink /proc/$p/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.02; done
done
in_ns() { local p=$1; shift; nsenter --net=/proc/$p/ns/net -- "$@"; }

ip link add eth0 type veth peer name eth0 netns "$INET"
ip addr add 203.0.113.2/24 dev eth0; ip link set eth0 up
ip link add eth1 type veth peer name eth0 netns "$LAN"
ip addr add 198.51.100.1/24 dev eth1; ip link set eth1 up
ip route add default via 203.0.113.1
in_ns "$INET" sh -ec 'ip link set lo up; ip addr add 203.0.113.1/24 dev eth0; ip link set eth0 up
  ip route add 172.17.0.0/16 via 203.0.113.2; ip route add 198.51.100.0/24 via 203.0.113.2'
in_ns "$LAN" sh -ec 'ip link set lo up; ip addr add 198.51.100.2/24 dev eth0; ip link set eth0 up
  ip route add default via 198.51.100.1'

args=(--data-root "$S/data" --exec-root "$S/exec" -H "unix://$S/docker.sock" --pidfile "$S/docker.pid"
      --cgroup-parent "$CG" --storage-driver "${STORAGE_DRIVER:-overlay2}" --userland-proxy="$PROXY")
/usr/sbin/dockerd "${args[@]}" >"$S/dockerd.log" 2>&1 &
DPID=$!
echo "pids host=$$ internet=$INET lan=$LAN dockerd=$DPID"
echo "iptables $(iptables -V)"
for _ in $(seq 300); do
  [ -S "$S/docker.sock" ] && /usr/bin/docker -H "unix://$S/docker.sock" version >/dev/null 2>&1 && break
  kill -0 $DPID 2>/dev/null || { echo "dockerd exited"; exit 3; }
  sleep 0.1
done
/usr/bin/docker -H "unix://$S/docker.sock" version >/dev/null 2>&1 || { echo "dockerd not answering"; exit 3; }
echo ready
read -r _ || true
kill -TERM $DPID 2>/dev/null || true
for _ in $(seq 100); do kill -0 $DPID 2>/dev/null || break; sleep 0.1; done
echo stopped
