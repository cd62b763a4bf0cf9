"""Firewall kinds, one module each, found by discovery (every module of this package
that calls `register`), as link kinds are.

A kind says everything about itself and runs nothing: which part of a node's
`Firewall` model it owns (`inputs`), the commands `nsbox explain` prints for it, the
program and arguments that load, test-load and read back its rules, how it words
a refusal, and the files `--artifacts` dumps for it. The layers are thin loops over
`kinds()`: nsbox/kernel/firewall.py runs the programs (apply, and validation in a
throwaway netns), nsbox/plan/ prints them, nsbox/artifacts/dumps.py dumps them. So
a new kind (as nft was) is one module here plus its field on the model's Firewall.

Pure: nothing here imports an effect (the import-linter contract in pyproject.toml
keeps it so), which is why show and explain may use it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

# What --artifacts dumps for a kind: (file, argv, Debian package, optional), see artifacts/dumps.py.
DumpSpec = tuple[str, tuple[str, ...], str, bool]


@dataclass(frozen=True)
class FirewallKind:
    name: str          # "iptables", "ip6tables", "nft"
    order: int         # applied in this order within a node (iptables, ip6tables, nft: as before)
    feature: str       # the kernel feature (model/lab.py FEATURES, host/features.py probe) behind it
    # The texts loaded for FIREWALL (a model.firewall.Firewall), each in one program run; [] = unused.
    inputs: Callable[[Any], list[str]]
    # (command as `nsbox explain` prints it, here-document) for FIREWALL.
    commands: Callable[[Any], list[tuple[str, str]]]
    # argv of the program that loads one input (its program name, resolved by nsbox.tools.find),
    # for FLAVOUR (iptables: nft or legacy); CHECK: parse and test-load only, commit nothing.
    load_argv: Callable[[str, bool], list[str]]
    # The one-line reason a (test-)load failed: (stderr, the input, its 1-based number).
    refused: Callable[[str, str, int], str]
    # argv that prints the rules with their counters, for FLAVOUR.
    save_argv: Callable[[str], list[str]]
    dumps: tuple[DumpSpec, ...] = ()
    install_hint: str = ""  # what to install when the program is missing
    # A validation error the lab's model alone shows (None: fine), before any program runs.
    model_check: Callable[[Any], str | None] = lambda lab: None
    # Inputs too big for one load (iptables-nft in a sandbox): the same rules as several
    # (text, extra args) loads, else None.
    split: Callable[[Any, str], list[tuple[str, list[str]]] | None] = lambda firewall, stderr: None
    # Validation when the program is missing: False = skip (the run says what to install).
    check_needs_program: bool = True
    # Its test-load takes the inputs of many nodes as one (iptables-restore: repeated
    # `*table ... COMMIT` blocks), so `nsbox run --all` judges every lab in one run.
    batchable: bool = False


_KINDS: dict[str, FirewallKind] = {}


def register(kind: FirewallKind) -> FirewallKind:
    _KINDS[kind.name] = kind
    return kind


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def kinds() -> list[FirewallKind]:
    """Every registered kind, in apply order."""
    return sorted(_KINDS.values(), key=lambda k: k.order)


def get(name: str) -> FirewallKind:
    return _KINDS[name]


_discover()
