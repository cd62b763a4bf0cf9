"""Per-namespace sysctls (net.*), written through /proc/sys from inside the node."""

from __future__ import annotations

import re

from nsbox.errors import KernelError, ValidationError


def write(node: str, key: str, value: str, optional: bool = False) -> None:
    """`sysctl -w KEY=VALUE`. /proc/sys/net follows the netns of the thread that opens it.

    optional: a key this kernel lacks (e.g. IPv6 ones without IPv6) is skipped."""
    path = proc_path(key)
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        if optional:
            return
        raise KernelError(f"{node}: sysctl {key} does not exist on this kernel") from None
    except OSError as e:
        raise KernelError(f"{node}: sysctl -w {key}={value}: {e.strerror}") from None


def proc_path(key: str) -> str:
    """Like sysctl(8): '.' separates levels, '/' stands for a dot inside a name
    (net.ipv4.conf.flannel/1.forwarding -> /proc/sys/net/ipv4/conf/flannel.1/forwarding)."""
    return "/proc/sys/" + key.translate(str.maketrans("./", "/."))


def read(key: str) -> str:
    with open(proc_path(key)) as f:
        return f.read().strip()


# Per-interface keys name an interface the throwaway netns does not have. Its
# 'default' conf entry takes the same values; neigh has no 'default' outside the
# initial namespace (net.ipv4.neigh.default.* is init_net's only), so neigh keys
# are tried on lo, which every namespace has.
_PER_IFACE = re.compile(r"^(net\.ipv[46]\.(conf|neigh))\.([^.]+)\.(.+)$")


def check_lab(lab) -> None:
    """Write every sysctl of LAB in a throwaway netns first: a key this kernel does
    not have per namespace (net.core.rmem_max lives only in the initial one) or a
    value it refuses ('banana') is a ValidationError before anything is built."""
    from nsbox.host import netns

    wanted: dict[tuple[str, str], tuple[str, bool]] = {}
    for node in lab.nodes.values():
        for key, value in node.sysctls.items():
            probe_key = key
            m = _PER_IFACE.match(key)
            if m and m.group(3) not in ("all", "default"):
                probe_key = f"{m.group(1)}.{'default' if m.group(2) == 'conf' else 'lo'}.{m.group(4)}"
            wanted.setdefault((probe_key, value), (f"node {node.name}: sysctl {key}={value}",
                                                   key in node.optional_sysctls))
    if not wanted:
        return
    with netns.scratch():
        for (key, value), (what, optional) in wanted.items():
            try:
                with open(proc_path(key), "w") as f:
                    f.write(value)
            except FileNotFoundError:
                if optional:
                    continue
                raise ValidationError(f"{what}: this kernel has no such per-namespace key "
                                      f"(keys such as net.core.rmem_max exist only in the host's namespace)") from None
            except OSError as e:
                raise ValidationError(f"{what}: the kernel refuses it ({e.strerror})") from None
