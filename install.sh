#!/bin/sh
# Install what nsbox needs on Debian 12 / Ubuntu 24.04, as root (or with sudo). docs/install.md
# lists each package and why:
#   - kernel tools it uses and the tests observe with (iproute2, iptables, conntrack, ping, curl, util-linux,
#     tcpdump for the packet captures of `run --artifacts`, nftables for recipes with native nft
#     rulesets, graphviz to test `show --format dot`, dig to observe the DNS servers, ipset for
#     the NetworkPolicy kit's kube-router sets)
#   - docker.io and busybox-static: the tests run the real dockerd 20.10 beside nsbox, in a
#     throwaway namespace (tests/support/realdocker/). Not when any dockerd is already there (Docker CE's
#     /usr/bin/dockerd, moby-engine...): installing Debian's beside it would clash. A dockerd
#     on the host would rewrite its iptables (FORWARD policy DROP) and add docker0, so the
#     install starts no service (a policy-rc.d for its duration) and leaves
#     docker.service/docker.socket disabled
#   - containernetworking-plugins: the real CNI plugins (bridge, host-local... 1.1.1 on Debian 12)
#     that nsbox's Kubernetes/CNI labs are compared with
#   - the tests' own tools: netcat-openbsd (nc -N), ruby, vagrant and shellcheck (the Vagrant lab's checks)
#   - a world-readable virtualenv at /opt/nsbox/venv made from the distribution's Python
#     (so an unprivileged user can run nsbox too), with nsbox and the test extras installed
#     into it as a copy (not editable: the venv must not depend on the checkout, which may sit
#     where other users cannot read, e.g. /root)
#   - the link /usr/local/bin/nsbox
# Settings: NSBOX_VENV (default /opt/nsbox/venv), NSBOX_BIN_LINK (default /usr/local/bin/nsbox;
# empty: no link), NSBOX_INSTALL_DRY_RUN=1 (print what would be installed, change nothing).
# Safe to run again.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${NSBOX_VENV:-/opt/nsbox/venv}
link=${NSBOX_BIN_LINK-/usr/local/bin/nsbox}
dry=${NSBOX_INSTALL_DRY_RUN:-}

if [ "$(id -u)" != 0 ] && [ -z "$dry" ]; then
    echo "install.sh: run as root (sudo ./install.sh)" >&2
    exit 2
fi

installed() {  # installed DEBIAN-PACKAGE: whether dpkg has it installed
    dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

# Any dockerd at all: Debian's (/usr/sbin), Docker CE's (/usr/bin, docker-ce), moby-engine, ...
have_dockerd() {
    command -v dockerd >/dev/null 2>&1 && return 0
    for d in /usr/sbin/dockerd /usr/bin/dockerd /usr/local/bin/dockerd; do
        [ -x "$d" ] && return 0
    done
    for p in docker.io docker-ce moby-engine docker-engine; do
        installed "$p" && return 0
    done
    return 1
}

need=""
for pair in ip:iproute2 iptables-legacy-save:iptables conntrack:conntrack ping:iputils-ping \
            curl:curl unshare:util-linux nsenter:util-linux setpriv:util-linux tcpdump:tcpdump \
            nft:nftables dot:graphviz dig:bind9-dnsutils ipset:ipset; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
have_dockerd || need="$need docker.io"
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
# the container image of the real-Docker tests is a busybox that needs no libraries
installed busybox-static || need="$need busybox-static"
installed containernetworking-plugins || need="$need containernetworking-plugins"
# the tests' own tools: netcat-openbsd's `nc -N` half-closes (the docker-proxy test); ruby,
# vagrant and shellcheck check the Vagrant lab (vagrant/) without a hypervisor; zsh parses
# the zsh completion script
installed netcat-openbsd || need="$need netcat-openbsd"
for pair in ruby:ruby vagrant:vagrant shellcheck:shellcheck zsh:zsh; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done

if [ -n "$dry" ]; then
    echo "apt:${need:- (nothing)}"
    echo "pip: $venv/bin/python -m pip install ${here}[test] (not editable)"
    echo "link: ${link:-(none)}"
    exit 0
fi

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
# Build from a copy of the checkout: pip would otherwise write build/ and *.egg-info into it.
src=$(mktemp -d)
trap 'rm -rf "$src" "$log"' EXIT
for f in nsbox recipes pyproject.toml setup.py README.md; do
    cp -R "$here/$f" "$src/"
done
# A copy, not an editable install (--force-reinstall: same version number, new code), so the
# venv works for every user wherever the checkout is. The tests still test the checkout:
# `python -m pytest` from it imports the checkout's nsbox first (tests/conftest.py checks).
if ! "$venv/bin/python" -m pip install --disable-pip-version-check "${src}[test]" >"$log" 2>&1 ||
   ! "$venv/bin/python" -m pip install --disable-pip-version-check --force-reinstall --no-deps "$src" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "install.sh: pip install failed" >&2
    exit 1
fi
chmod -R a+rX "$venv"
if [ -n "$link" ]; then
    # A launcher rather than a plain link where env(1) can block signals (coreutils >= 8.31):
    # Python then starts with HUP, INT and TERM blocked, so a Ctrl-C during its own start-up
    # (before nsbox's handlers exist: "Fatal Python error", exit 1) waits for nsbox's handlers,
    # which nsbox.entry installs and then unblocks. Written beside LINK and renamed over it:
    # never written through whatever LINK is now (a link into the venv).
    if /usr/bin/env --block-signal=INT true 2>/dev/null; then
        tmp_link="$link.install.$$"
        printf '#!/bin/sh\n# nsbox launcher (install.sh): Python starts with HUP, INT and TERM blocked;\n# nsbox unblocks them once its own handlers are in.\nexec /usr/bin/env --block-signal=HUP,INT,TERM %s "$@"\n' \
            "'$venv/bin/nsbox'" >"$tmp_link"
        chmod 755 "$tmp_link"
        mv -f "$tmp_link" "$link"
    else
        ln -sf "$venv/bin/nsbox" "$link"
    fi
fi
echo "nsbox installed: $venv/bin/nsbox${link:+ (linked from $link)}"
