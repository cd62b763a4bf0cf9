"""Check kinds, one module each, found by discovery (every module of this package whose
name does not start with "_" is imported and registers its CheckKind).

One module holds everything about its kind: the frozen dataclass a recipe's builder
makes, the builder itself, its validation against the lab (the same one-line messages
`nsbox validate` prints), its JSON form (the "type" key of a serialized check, the
same as CheckResult.kind), what it runs when the lab is verified and how it judges,
which namespaces explain it (artifacts), and which netns paths an external verifier
needs for it. The layers (validate, serialize, verifier, artifacts, external) are
dispatchers over KINDS; a new check type is one module here plus its tests.

Why here and not in nsbox/model: as with link kinds, a check is first part of the model
(built and validated in the recipe jail, where the kernel is out of reach); its verify
function imports the kernel observers it reads only when it runs.

Import rule for kind modules: nothing from nsbox.model at module level (nsbox.model
imports the dataclasses from here), kernel observers only inside functions.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from nsbox.errors import ValidationError

if TYPE_CHECKING:
    from nsbox.model.lab import Lab
    from nsbox.verify.results import CheckResult


class Check(Protocol):
    """What every check is: a frozen dataclass with a unique name and its expectation as text."""

    name: str

    @property
    def expected(self) -> str: ...


# When a kind runs in verify(): traffic first (probes, all at once), then what reads the
# kernel's state the traffic left (conntrack, neighbours, ...), then verdicts computed
# from other checks' results (spread).
TRAFFIC, STATE, SUMMARY = 0, 1, 2


@dataclass
class Verification:
    """What a kind's run function gets: the built lab, the servers, the timing, and what
    the checks that ran before it found (results and probes by check name)."""

    built: Any
    servers: Any
    timing: Any
    results: dict[str, "CheckResult"] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)  # reach checks: their last ProbeResult


def _asdict(check: Any) -> dict[str, Any]:
    return dataclasses.asdict(check)


def _from_dict(cls: type, d: dict[str, Any], make: Callable[[type, dict], Any]) -> Any:
    return make(cls, d)


@dataclass(frozen=True)
class CheckKind:
    name: str   # the JSON "type" of a serialized check, and CheckResult.kind of its result
    cls: type   # the frozen dataclass
    # (lab, check, reach checks by name) -> None, or ValidationError with one line
    validate: Callable[["Lab", Any, dict[str, Any]], None]
    # (Verification, checks of this kind) -> {name: CheckResult}; run in `phase` order
    run: Callable[[Verification, list[Any]], dict[str, "CheckResult"]]
    # (lab, check) -> node names whose state explains the check (artifacts dump them)
    involved: Callable[["Lab", Any], list[str]]
    phase: int = STATE
    # (lab, check) -> netns the verifier enters for it (the external verifier needs their paths);
    # default: the involved nodes
    netns: Callable[["Lab", Any], set[str]] | None = None
    # check -> the names of other checks it reads (a conntrack check: its connection's)
    reads: Callable[[Any], tuple[str, ...]] = lambda c: ()
    # (external lab, check, real iptables-save texts by node) -> None, or UsageError: what must
    # hold in namespaces nsbox did not build before any probe is sent
    prepare_external: Callable[[Any, Any, dict[str, str]], None] = lambda built, c, rules: None
    to_dict: Callable[[Any], dict[str, Any]] = _asdict
    # (dict without "type", the serializer's strict constructor) -> check
    from_dict: Callable[[dict[str, Any], Callable[[type, dict], Any]], Any] | None = None
    # the Lab method that makes it ("expect_listening"); Lab finds builders by this name
    builder: str | None = None
    build: Callable[..., Any] | None = None

    def make(self, d: dict[str, Any], make: Callable[[type, dict], Any]) -> Any:
        return self.from_dict(d, make) if self.from_dict else _from_dict(self.cls, d, make)

    def nodes(self, lab: "Lab", check: Any) -> set[str]:
        return self.netns(lab, check) if self.netns else set(self.involved(lab, check))


KINDS: dict[str, CheckKind] = {}
_BY_CLASS: dict[type, CheckKind] = {}


def register(kind: CheckKind) -> CheckKind:
    if kind.name in KINDS:
        raise RuntimeError(f"two check kinds named {kind.name!r}")
    KINDS[kind.name] = kind
    _BY_CLASS[kind.cls] = kind
    return kind


def kind_of(check: Any) -> CheckKind:
    """The kind of a check object (its exact class), or ValidationError."""
    kind = _BY_CLASS.get(type(check))
    if kind is None:
        raise ValidationError(f"check {getattr(check, 'name', check)!r}: {type(check).__name__} is no check kind "
                              f"(known: {', '.join(sorted(KINDS))})")
    return kind


def builders() -> dict[str, CheckKind]:
    """Lab method name -> the kind whose builder it is."""
    return {k.builder: k for k in KINDS.values() if k.builder and k.build}


def result_kinds() -> tuple[str, ...]:
    """Every CheckResult.kind the verifier may report."""
    return tuple(KINDS)


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()
