#!/bin/sh
# Independent observer for the dual-stack lab (tests/data/ipv6), run through
# `nsbox run dual-stack --then ...` in the live lab's host node. Uses ip, ss,
# curl, ping, conntrack and ip6tables-$NSBOX_OBS_FLAVOUR, and records each
# command's output and exit status in $NSBOX_OBS_DIR/<name>.out and <name>.rc.
set -u
out=${NSBOX_OBS_DIR:?NSBOX_OBS_DIR must name a writable directory}
flavour=${NSBOX_OBS_FLAVOUR:?NSBOX_OBS_FLAVOUR must be nft or legacy}
c1=${NSBOX_NETNS_C1:?} c2=${NSBOX_NETNS_C2:?} ext=${NSBOX_NETNS_EXT:?}
drop="-d fd00:20::2/128 -p tcp -m tcp --dport 8080 -j DROP"

probe() {  # probe NAME CMD...
    name=$1; shift
    "$@" > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
}

# first, before any traffic of ours: every address's flags as the kernel has them
for n in c1 c2 ext host; do
    eval ns=\${NSBOX_NETNS_$(echo $n | tr a-z A-Z)}
    probe addr-$n ip -n "$ns" -j -6 addr show
done
# c2's listeners: one socket per port serves both families
probe ss-c2 ip netns exec "$c2" ss -Hlntu
# the same servers in both families, by curl and ping
probe curl4-c2   ip netns exec "$c1" curl -s -m 5 http://10.10.0.3/source
probe curl6-c2   ip netns exec "$c1" curl -s -m 5 "http://[fd00:10::3]/source"
probe ping6-c2   ip netns exec "$c1" ping -6 -c1 -W2 fd00:10::3
# NAT66: ext sees the host's address; conntrack in the host (where this runs) tells the same
probe curl6-ext  ip netns exec "$c1" curl -s -m 5 "http://[fd00:20::2]/source"
probe conntrack6 conntrack -L -f ipv6 -p tcp --dport 80
# the IPv6 DROP: curl is dropped, the rule's counter moves; without it, curl gets through
probe save6-before ip6tables-$flavour-save -c -t filter
probe curl6-8080-dropped ip netns exec "$c1" curl -s -m 2 "http://[fd00:20::2]:8080/"
probe save6-after ip6tables-$flavour-save -c -t filter
probe delete-drop ip6tables-$flavour -D FORWARD $drop
probe curl6-8080-open ip netns exec "$c1" curl -s -m 5 "http://[fd00:20::2]:8080/"
