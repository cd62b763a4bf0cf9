#!/bin/sh
# Independent observer of a live lab. Run it with
#     nsbox run RECIPE --then 'sh tests/support/observers/dump_lab.sh'
# nsbox runs it inside the lab's `host` node, before teardown, with
# NSBOX_NETNS_<NODE> naming each node's netns. It asks only the real tools
# (ip, iptables-save, sysctl), never nsbox, and writes what they print
# into $NSBOX_OBS_DIR; the tests judge those files.
set -u
out=${NSBOX_OBS_DIR:?NSBOX_OBS_DIR must name a writable directory}

# Where are we? (The tests compare these with their own namespaces.)
readlink /proc/self/ns/net > "$out/then.netns"
readlink /proc/self/ns/mnt > "$out/then.mntns"
env | grep '^NSBOX_NETNS_' | sort > "$out/netns.env"

# The namespaces and journal as `ip netns` and ls see them from here
# (with --on-host that is the real host's /run; in the sandbox, its private /run).
ip netns list > "$out/ip-netns-list.txt" 2>&1
if [ -d /run/nsbox ]; then
    ls -1 /run/nsbox > "$out/run-nsbox.ls"
    cat /run/nsbox/*.journal > "$out/run-nsbox.journal" 2>/dev/null
fi

# Every node's links, addresses and routes, entered by name like a user would.
for var in $(env | sed -n 's/^\(NSBOX_NETNS_[A-Z0-9_]*\)=.*/\1/p'); do
    node=$(printf '%s' "${var#NSBOX_NETNS_}" | tr 'A-Z_' 'a-z-')
    eval "ns=\$$var"
    ip netns exec "$ns" ip -j -d link show > "$out/$node.link.json" 2> "$out/$node.link.err"
    ip netns exec "$ns" ip -j addr show > "$out/$node.addr.json" 2> "$out/$node.addr.err"
    ip netns exec "$ns" ip -j route show > "$out/$node.route.json" 2> "$out/$node.route.err"
done

# The host node's firewall, as the distribution's iptables shows it (nsbox's
# rules go there by default), and the forwarding switch.
iptables-save > "$out/host.iptables-save" 2> "$out/host.iptables-save.err"
ip6tables-save > "$out/host.ip6tables-save" 2> "$out/host.ip6tables-save.err"
sysctl -n net.ipv4.ip_forward > "$out/host.ip_forward" 2>&1

echo "dump_lab: done"
touch "$out/dump.done"
