"""Per-namespace sysctls (net.*), written through /proc/sys from inside the node."""

from __future__ import annotations

from nsbox.errors import KernelError


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
