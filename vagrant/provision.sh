#!/bin/sh
# Provisioning of the nsbox Vagrant lab, also run as is by nsbox's CI on its own machine:
#   1. the README's install command (install.sh from the checkout at $NSBOX_SRC),
#   2. `nsbox doctor`: what this kernel and these tools can do,
#   3. `nsbox run --all`: every recipe, proven with real traffic (recipes whose
#      kernel feature is missing are skipped with the reason; exit 4 = all skipped).
# Runs as root (Vagrant's shell provisioner does). Safe to run again. NSBOX_VENV and
# NSBOX_BIN_LINK pass through to install.sh; NSBOX_BIN is the nsbox it then runs.
set -eu

src=${NSBOX_SRC:-/nsbox}
if [ "$(id -u)" != 0 ]; then
    echo "provision.sh: run as root" >&2
    exit 2
fi
if [ ! -x "$src/install.sh" ]; then
    echo "provision.sh: no nsbox checkout at $src (set NSBOX_SRC)" >&2
    exit 2
fi

echo "== install ($src/install.sh)"
"$src/install.sh"

nsbox=${NSBOX_BIN:-/usr/local/bin/nsbox}
echo "== nsbox doctor"
"$nsbox" doctor

echo "== nsbox run --all"
status=0
"$nsbox" run --all || status=$?
case $status in
    0) echo "nsbox lab ready: vagrant ssh -c 'sudo nsbox run bridge-mode'" ;;
    *) echo "provision.sh: nsbox run --all exited $status" >&2; exit "$status" ;;
esac
