"""The scenarios whose real `iptables-save` is the reference for nsbox's docker=20.10 layout.

Each scenario starts from a dockerd that has just started (no containers, no user
networks), does what a user would type, and returns the normalised dumps it is
judged by, as {file name: text}: `<scenario>.<netns>.rules`, netns `host` (the
Docker host) or a container's name. The files live in tests/data/realdocker/;
regenerate them with

    cd REPO && sudo /opt/nsbox/venv/bin/python tests/support/realdocker/scenarios.py --write

(what tests/kernel/test_kernel_real_docker.py compares against: a difference means the
real Docker, or the distribution's iptables, changed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make `tests.support` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    __package__ = "tests.support.realdocker"

from tests.support import paths  # noqa: E402
from tests.support.realdocker.dockerd import RealDocker  # noqa: E402
from tests.support.realdocker.normalize import normalize  # noqa: E402

DATA = paths.DATA / "realdocker"
USER_SUBNET = "10.99.0.0/24"


def dumps(d: RealDocker, scenario: str, *nodes: str) -> dict[str, str]:
    return {f"{scenario}.{n}.rules": normalize(d.iptables_save(n)) for n in ("host", *nodes)}


def daemon(d: RealDocker) -> dict[str, str]:
    """dockerd started, nothing run: the chains it makes at start."""
    return dumps(d, "daemon")


def bridge_mode(d: RealDocker) -> dict[str, str]:
    """Two containers on docker0, no published ports (the bridge-mode recipe's c1, c2)."""
    d.run("c1")
    d.run("c2")
    return dumps(d, "bridge-mode")


def publish(d: RealDocker) -> dict[str, str]:
    """`docker run -p 8080:80`, with the daemon's userland proxy on or off."""
    d.run("web", "-p", "8080:80")
    return dumps(d, f"publish-proxy-{'on' if d.userland_proxy else 'off'}")


def user_network(d: RealDocker) -> dict[str, str]:
    """A user-defined bridge network (its own br-<id>, isolation, embedded DNS in each
    container's own nat table), u1 publishing 9090:80, u2 unpublished."""
    d.docker("network", "create", "--subnet", USER_SUBNET, "mynet")
    d.run("u1", "--network", "mynet", "-p", "9090:80")
    d.run("u2", "--network", "mynet")
    return dumps(d, "user-network", "u2")


def host_mode(d: RealDocker) -> dict[str, str]:
    d.run("h1", "--network", "host")
    return dumps(d, "host-mode")


def none_mode(d: RealDocker) -> dict[str, str]:
    d.run("n1", "--network", "none")
    return dumps(d, "none-mode", "n1")


def container_mode(d: RealDocker) -> dict[str, str]:
    d.run("c1")
    d.run("cm", "--network", "container:c1")
    return dumps(d, "container-mode")


# On a daemon with the userland proxy on (dockerd's default), in this order.
PROXY_ON: dict[str, Callable[[RealDocker], dict[str, str]]] = {
    "daemon": daemon, "bridge-mode": bridge_mode, "publish-proxy-on": publish, "user-network": user_network,
    "host-mode": host_mode, "none-mode": none_mode, "container-mode": container_mode,
}
# On a second daemon, started with --userland-proxy=false.
PROXY_OFF: dict[str, Callable[[RealDocker], dict[str, str]]] = {"publish-proxy-off": publish}


def run_all(d: RealDocker, scenarios: dict[str, Callable[[RealDocker], dict[str, str]]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for fn in scenarios.values():
        out.update(fn(d))
        d.remove_all()
    return out


def main(argv: list[str]) -> int:
    write = "--write" in argv
    found: dict[str, str] = {}
    for proxy, scenarios in ((True, PROXY_ON), (False, PROXY_OFF)):
        with RealDocker(userland_proxy=proxy) as d:
            found.update(run_all(d, scenarios))
            version = d.docker("version", "-f", "{{.Server.Version}}")
            flavour = d.iptables_version
    for name, text in sorted(found.items()):
        path = DATA / name
        if write:
            DATA.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        same = path.exists() and path.read_text() == text
        print(f"{'wrote' if write else ('same' if same else 'DIFFERS')}: {path.relative_to(DATA.parents[1])}")
    print(f"dockerd {version}, {flavour}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
