#!/bin/sh
# Install what nsbox needs on Debian 12 / Ubuntu 24.04, as root (or with sudo):
#   - kernel tools it uses and the tests observe with (iproute2, iptables, conntrack, ping, curl, util-linux,
#     tcpdump for the packet captures of `run --artifacts`, nftables for recipes with native nft
#     rulesets, graphviz to test `show --format dot`, dig to observe the DNS servers)
#   - docker.io and busybox-static: the tests run the real dockerd 20.10 beside nsbox, in a
#     throwaway namespace (tests/realdocker/). A dockerd on the host would rewrite its
#     iptables (FORWARD policy DROP) and add docker0, so the install starts no service
#     (a policy-rc.d for its duration) and leaves docker.service/docker.socket disabled
#   - a world-readable virtualenv at /opt/nsbox/venv made from the distribution's Python
#     (so an unprivileged user can run nsbox too), with nsbox installed editable from this checkout
#   - /usr/local/bin/nsbox
# Safe to run again.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${NSBOX_VENV:-/opt/nsbox/venv}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo ./install.sh)" >&2
    exit 2
fi

need=""
for pair in ip:iproute2 iptables-legacy-save:iptables conntrack:conntrack ping:iputils-ping \
            curl:curl unshare:util-linux nsenter:util-linux setpriv:util-linux tcpdump:tcpdump \
            nft:nftables dot:graphviz dig:bind9-dnsutils /usr/sbin/dockerd:docker.io; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
# the container image of the real-Docker tests is a busybox that needs no libraries
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need="$need busybox-static"
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    rcd=""
    case " $need " in *" docker.io "*)
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            rcd=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\n# nsbox install.sh: start no service while installing\nexit 101\n' >"$rcd"
            chmod 755 "$rcd"
            trap 'rm -f "$rcd"' EXIT
        fi;;
    esac
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
    if [ -n "$rcd" ]; then rm -f "$rcd"; trap - EXIT; fi
    case " $need " in *" docker.io "*)
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
        fi;;
    esac
fi

umask 022
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
fi
log=$(mktemp)
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -e "$here[test]" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install.sh: pip install failed" >&2
    exit 1
fi
rm -f "$log"
ln -sf "$venv/bin/nsbox" /usr/local/bin/nsbox
echo "nsbox installed: $(command -v nsbox) (python: $venv/bin/python)"
