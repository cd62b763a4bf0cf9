"""Kinds of objects a lab is built from, one module each, found by discovery.

Each family is a package of one module per kind (links: nsbox.kinds.links; probe
protocols: nsbox.kinds.protocols; report formats: nsbox.report.formats). Its
modules are found with pkgutil over the package's own directory, as pyroute2
loads its link plugins, and each registers itself when imported: no hand list to
forget a kind in. A module whose name starts with "_" is a helper, not a kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover(package: str) -> list[ModuleType]:
    """Import every kind module of PACKAGE (a package's dotted name), in name order."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{package}.{n}") for n in names]
