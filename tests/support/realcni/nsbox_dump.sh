#!/bin/bash
# nsbox_dump.sh OUT NS... : dump.sh for a live nsbox lab (run as `nsbox run ... --then`):
# namespace NAME is $NSBOX_NETNS_<NAME>.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
in_ns() {
  local var
  var="NSBOX_NETNS_$(echo "$1" | tr 'a-z-' 'A-Z_')"; shift
  ip netns exec "${!var}" "$@"
}
# shellcheck source=tests/support/realcni/dump.sh
. "$HERE/dump.sh" "$@"
