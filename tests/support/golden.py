"""Docker 29's iptables-save for the default bridge, read from tests/data/docker29/ (moby's
own listings and goldens, vendored: SOURCE.md there names the commit and the licence).

Not derived from the recipe, so the tests compare two independent texts:

- IPv4: `new-daemon.rules` (moby's generated listing: dockerd started, docker0,
  no container), plus what a running host with CONTAINERS containers adds, per
  dataplane.md: FORWARD's policy DROP (dockerd turned ip_forward on itself) and
  one raw `-d <ctr>/32 ! -i docker0 -j DROP` per container (Docker >= 28).
- IPv6: the daemon-level skeleton of moby's firewall unit tests
  (`goldens/iptables/cleaned,hairpin=false__ip6tables.golden`: userland proxy on,
  as bridge-mode), plus DOCKER-USER and its jump, which another part of dockerd
  adds (goldens/README.md) - placed as in new-daemon.rules.

bridge-mode publishes no port, so nothing else is added.
"""

from __future__ import annotations

from tests.support.paths import DATA

REFERENCE = DATA / "docker29"
SUBNET_DEV = "docker0"


def parse_save(text: str) -> dict[str, list[str]]:
    """iptables-save or `-P/-N/-A` listing text -> table -> chain and rule lines, without
    counters, in iptables-save's notation (`:CHAIN POLICY` / `:CHAIN -`)."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif current is None:
            raise ValueError(f"line outside a table: {line!r}")
        elif line.startswith(":"):
            current.append(" ".join(line.split()[:2]))
        elif line.startswith("-P "):
            current.append(":{} {}".format(*line.split()[1:3]))
        elif line.startswith("-N "):
            current.append(f":{line.split()[1]} -")
        else:
            current.append(line)
    return {t: _save_order(lines) for t, lines in tables.items()}


def _save_order(lines: list[str]) -> list[str]:
    """iptables-save order: builtin chains as listed, user chains by name, then rules."""
    builtin = [ln for ln in lines if ln.startswith(":") and not ln.endswith(" -")]
    user = sorted(ln for ln in lines if ln.startswith(":") and ln.endswith(" -"))
    return builtin + user + [ln for ln in lines if not ln.startswith(":")]


def _with_docker_user(filter_lines: list[str]) -> list[str]:
    """Add DOCKER-USER and `-A FORWARD -j DOCKER-USER` ahead of FORWARD's other rules."""
    lines = list(filter_lines)
    if ":DOCKER-USER -" not in lines:
        lines.append(":DOCKER-USER -")
        first_forward = next(i for i, ln in enumerate(lines) if ln.startswith("-A FORWARD "))
        lines.insert(first_forward, "-A FORWARD -j DOCKER-USER")
    return _save_order(lines)


def container_ip(i: int) -> str:
    return f"172.17.{(i + 1) // 256}.{(i + 1) % 256}"


def docker29_rules(containers: int, family: int = 4) -> dict[str, list[str]]:
    """What iptables-save (family 4) or ip6tables-save (family 6) prints on a Docker 29
    host with CONTAINERS containers on docker0 and no published port: table -> lines."""
    if family == 6:
        text = (REFERENCE / "goldens" / "iptables" / "cleaned,hairpin=false__ip6tables.golden").read_text()
        saved = parse_save(text)
        saved["filter"] = _with_docker_user(saved["filter"])
        return saved
    saved = parse_save((REFERENCE / "new-daemon.rules").read_text())
    saved["filter"] = _with_docker_user([":FORWARD DROP" if ln == ":FORWARD ACCEPT" else ln
                                         for ln in saved["filter"]])
    saved["raw"] = [":PREROUTING ACCEPT", ":OUTPUT ACCEPT"] + [
        f"-A PREROUTING -d {container_ip(i)}/32 ! -i {SUBNET_DEV} -j DROP" for i in range(1, containers + 1)]
    return saved
