#!/bin/sh
# Independent traffic observer for the bridge-mode lab, run like dump_lab.sh
# through `nsbox run bridge-mode --then ...` inside the live lab's host node.
# Uses ping, curl and conntrack, and records each command's output and exit
# status in $NSBOX_OBS_DIR/<name>.out and <name>.rc for the tests to judge.
set -u
out=${NSBOX_OBS_DIR:?NSBOX_OBS_DIR must name a writable directory}
c1=${NSBOX_NETNS_C1:?} internet=${NSBOX_NETNS_INTERNET:?}

probe() {  # probe NAME CMD...
    name=$1; shift
    "$@" > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
}

# container to container, across docker0
probe ping-c1-c2      ip netns exec "$c1" ping -c1 -W2 172.17.0.3
# container to the outside: the server reports the source address it saw
probe curl-c1-source  ip netns exec "$c1" curl -s -m 5 http://203.0.113.1/source
# the host to a container's web server
probe curl-host-c1    curl -s -m 5 http://172.17.0.2/host
# conntrack in the host (this script runs in the host node) after those connections
probe conntrack-host  conntrack -L -p tcp --dport 80
# the outside routes 172.17.0.0/16 via the host (direct routing): the rules must stop it
probe route-internet   ip netns exec "$internet" ip -j route show
probe curl-internet-c1 ip netns exec "$internet" curl -s -m 2 http://172.17.0.2/
# and the kernel's own accounting of which rule dropped it
probe raw-counters     iptables-save -c -t raw
# internet also routes lan's network via the host: FORWARD's policy must stop it
probe filter-counters-before iptables-save -c -t filter
probe curl-internet-lan ip netns exec "$internet" curl -s -m 2 http://198.51.100.2/
probe filter-counters-after  iptables-save -c -t filter

echo "bridge_mode_traffic: done"
touch "$out/traffic.done"
