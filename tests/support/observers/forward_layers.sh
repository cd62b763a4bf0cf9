#!/bin/sh
# Independent observer of which firewall layer drops forwarded traffic in the
# bridge-mode lab (or a mutant of it). Run through `nsbox run ... --then` inside
# the live lab's host node: it saves the host's rules with packet counters
# (iptables-save -c: the distribution's iptables, where nsbox writes), sends one curl
# from internet to c2 and one to lan, and saves again after each, so the tests
# can see which rule's counter each curl moved. Never asks nsbox.
set -u
out=${NSBOX_OBS_DIR:?NSBOX_OBS_DIR must name a writable directory}
internet=${NSBOX_NETNS_INTERNET:?}

iptables-save -c > "$out/save0.txt"
# direct routing: internet routes 172.17.0.0/16 via the host
ip netns exec "$internet" curl -s -m 1 http://172.17.0.3/host > "$out/curl-c2.out" 2>&1
echo $? > "$out/curl-c2.rc"
iptables-save -c > "$out/save1.txt"
# routed through the host to its other network
ip netns exec "$internet" curl -s -m 1 http://198.51.100.2/host > "$out/curl-lan.out" 2>&1
echo $? > "$out/curl-lan.rc"
iptables-save -c > "$out/save2.txt"
echo "forward_layers: done"
