#!/bin/sh
# One VM's part of the two-VM lab (Vagrantfile.multi): pod-to-pod with cni=vxlan, the
# machines $NSBOX_PART of it, their wires macvlan children of the interface that holds
# $NSBOX_UNDERLAY (the VM's private network). Runs as root; safe to run again (the part
# that is up is taken down first).
set -eu

nsbox=${NSBOX_BIN:-/usr/local/bin/nsbox}
part=${NSBOX_PART:?set NSBOX_PART (machines of the lab, e.g. node1,outside)}
underlay=${NSBOX_UNDERLAY:?set NSBOX_UNDERLAY (this VM address or interface on the private network)}
if [ "$(id -u)" != 0 ]; then
    echo "part-up.sh: run as root" >&2
    exit 2
fi

"$nsbox" down pod-to-pod >/dev/null 2>&1 || true
"$nsbox" up pod-to-pod --set cni=vxlan --part "$part" --underlay "$underlay"
echo "part $part is up: sudo nsbox verify pod-to-pod (once the other VM is up too)"
