"""Per-namespace sysctls (net.*), written through /proc/sys from inside the node."""

from __future__ import annotations

from nsbox.errors import KernelError


def write(node: str, key: str, value: str) -> None:
    """`sysctl -w KEY=VALUE`. /proc/sys/net follows the netns of the thread that opens it."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except FileNotFoundError:
        raise KernelError(f"{node}: sysctl {key} does not exist on this kernel") from None
    except OSError as e:
        raise KernelError(f"{node}: sysctl -w {key}={value}: {e.strerror}") from None


def read(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()
