"""The firewall programs this host has and how to start them: python-iptables
(for `nsbox doctor` only), the `{ip,ip6}tables-<flavour>-<verb>` programs, which
flavour `iptables` is here, and `nft`.

The iptables programs read XTABLES_LIBDIR (and python-iptables IPTABLES_LIBDIR)
to find extension libraries and dlopen them from any directory: a variable left
in root's environment (sudo -E, a CI runner) would run its code as root. They
are removed from what these programs and python-iptables see (tool_env).
"""

from __future__ import annotations

import os
import subprocess
from typing import Callable

from nsbox.errors import REINSTALL, InstallError, missing_module
from nsbox.kinds.firewalls.xtables import FAMILIES
from nsbox.wire.iptables import FLAVOURS

_loaded: list = []  # the iptc module once it has loaded (importing it is slow: it runs ldconfig)


def _iptc():
    """The python-iptables module, or InstallError: a libxtables that does not load
    is a broken installation, never a kernel without NAT."""
    if _loaded:
        return _loaded[0]
    for var in _LIBDIR_ENV:  # python-iptables dlopens from these directories: never a caller's
        os.environ.pop(var, None)
    try:
        import iptc  # loads libxtables; imported late so unit tests need no iptables
    except ImportError as e:
        raise (missing_module(e) or _libxtables_error(e)) from None
    except Exception as e:  # python-iptables raises whatever ctypes or its own checks raise
        raise _libxtables_error(e) from None
    _loaded.append(iptc)
    return iptc


def _libxtables_error(e: BaseException) -> InstallError:
    detail = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, TypeError) and "NoneType" in detail:
        # xtables.py compares the version of the library it found, and found none
        detail = "libxtables.so was not found"
    hints = [f"{v}={os.environ[v]}" for v in _IPTC_ENV if v in os.environ]
    if hints:
        detail += f"; note {', '.join(hints)} is set and steers where python-iptables looks"
    return InstallError(f"python-iptables cannot load libxtables ({detail}); install it with: "
                        f"apt install iptables (Debian/Ubuntu), {REINSTALL}")


# Environment variables python-iptables reads to find libxtables and its extensions.
_IPTC_ENV = ("PYTHON_IPTABLES_XTABLES_VERSION", "XTABLES_LIBDIR", "IPTABLES_LIBDIR")
# Those that name a directory libraries are loaded from (any directory, as root).
_LIBDIR_ENV = ("XTABLES_LIBDIR", "IPTABLES_LIBDIR")


def tool_env() -> dict[str, str]:
    """The environment for an iptables program: this one without the library directories."""
    return {k: v for k, v in os.environ.items() if k not in _LIBDIR_ENV}


def resolve_flavour(choice: str = "auto", find: Callable[[str], str | None] | None = None) -> str:
    """nft or legacy: CHOICE, or for auto what the system's `iptables` is.

    Debian's alternatives make /usr/sbin/iptables a link to
    /etc/alternatives/iptables -> xtables-nft-multi or xtables-legacy-multi;
    anything else (a distro without alternatives) is asked with `iptables -V`,
    which prints "(nf_tables)" or "(legacy)"."""
    if choice in ("nft", "legacy"):
        return choice
    if choice != "auto":
        raise ValueError(f"--iptables must be one of {', '.join(FLAVOURS)}, not {choice!r}")
    if find is None:
        from nsbox import tools

        find = tools.find
    found = find("iptables")
    if found is None:
        return "legacy"
    target = os.path.basename(os.path.realpath(found))
    if "nft" in target:
        return "nft"
    if "legacy" in target:
        return "legacy"
    version = subprocess.run([found, "-V"], capture_output=True, text=True, check=False, env=tool_env()).stdout
    return "nft" if "nf_tables" in version else "legacy"


def program(family: int, flavour: str, verb: str) -> str:
    """Absolute path of e.g. ip6tables-nft-restore, or InstallError."""
    from nsbox import tools

    name = f"{FAMILIES[family]}-{flavour}-{verb}"
    prog = tools.find(name)
    if prog is None:
        other = "legacy" if flavour == "nft" else "nft"
        raise InstallError(f"{name} is not installed (apt install iptables), or use --iptables {other}")
    return prog


INSTALL_HINT = "nft is not installed (apt install nftables)"


def nft() -> str:
    from nsbox import tools

    prog = tools.find("nft")
    if prog is None:
        raise InstallError(INSTALL_HINT)
    return prog


def nft_probe() -> str | None:
    """Why nftables cannot be used here, or None. Runs in a scratch netns."""
    from nsbox import tools
    from nsbox.kinds.firewalls.nft import first_error

    prog = tools.find("nft")
    if prog is None:
        return INSTALL_HINT
    done = subprocess.run([prog, "list", "tables"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"nft list tables: {first_error(done.stderr)}"
    return None


def ipset_probe() -> str | None:
    """Why ipsets cannot be used here, or None. Runs in a scratch netns (the set goes with it)."""
    from nsbox import tools

    prog = tools.find("ipset")
    if prog is None:
        return "ipset is not installed (apt install ipset)"
    for argv in ([prog, "create", "nsbprobe", "hash:net", "family", "inet"], [prog, "destroy", "nsbprobe"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(argv[1:3])}: {' '.join(done.stderr.split()) or f'exit {done.returncode}'}"
    return None
