"""Wire: pure code. Netlink message encoding, the `ip`/restore/nft command text, and
reading that text back. Nothing here touches the kernel or the host; plan/, explain,
show and validation use it. (Effects: nsbox/kernel/; observers: nsbox/observe/;
the host's namespaces, journal, programs and feature probes: nsbox/host/.)

Every package that imports pyroute2 imports this one first, for the following:

pyroute2's package file imports its whole API on `import pyroute2.anything` (IPRoute,
NDB, IPDB, their asyncio machinery, ...). nsbox mostly needs its netlink message
classes. So the package is registered here without running its __init__, which runs
the first time the package itself is asked for a name that is not a submodule
(`from pyroute2 import IPRoute`, `pyroute2.__version__`): then it is whole.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def _pyroute2_on_demand() -> None:
    if "pyroute2" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("pyroute2")
    except (ImportError, ValueError):
        return
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed: the ImportError comes where it is used, as before
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str):
        # `from pyroute2 import config`: a submodule, imported as such.
        if not name.startswith("__") and importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        # A name of the package itself: run its __init__ now (once), then answer.
        module.__dict__.pop("__getattr__", None)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, name)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules["pyroute2"] = module


_pyroute2_on_demand()
