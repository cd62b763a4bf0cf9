#!/bin/bash
# dump.sh OUT NS... : what a netns holds, for the real-vs-nsbox comparison
# (tests/kernel/test_kernel_real_cni.py). The caller defines `in_ns NAME CMD...`, which runs CMD
# in namespace NAME (nsenter on the real side, ip netns exec on nsbox's).
# Per namespace: ip -j -d link, ip -j addr, ip -j route (main table), iptables-save and
# the per-interface sysctls the CNI plugins touch.
set -u
out=$1; shift
for ns in "$@"; do
  # A carrier change reaches operstate through the kernel's linkwatch, up to a second
  # later: wait (at most 2 s) until no link of the namespace is still NO-CARRIER / DOWN.
  for _ in $(seq 20); do in_ns "$ns" ip link show | grep -qE 'NO-CARRIER|state DOWN' || break; sleep 0.1; done
  in_ns "$ns" ip -j -d link show > "$out/$ns.link.json"
  in_ns "$ns" ip -j addr show > "$out/$ns.addr.json"
  in_ns "$ns" ip -j route show table main > "$out/$ns.route.json"
  in_ns "$ns" iptables-save > "$out/$ns.iptables" 2>/dev/null || true
  # shellcheck disable=SC2016  # expanded by the sh inside the namespace
  in_ns "$ns" sh -c '
    echo "net.ipv4.ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
    for d in /proc/sys/net/ipv4/conf/*; do i=${d##*/}
      for k in arp_notify proxy_arp route_localnet forwarding; do echo "net.ipv4.conf.$i.$k $(cat $d/$k)"; done
    done
    for d in /proc/sys/net/ipv6/conf/*; do i=${d##*/}
      for k in accept_ra accept_dad; do [ -e $d/$k ] && echo "net.ipv6.conf.$i.$k $(cat $d/$k)"; done
    done' > "$out/$ns.sysctl"
done
