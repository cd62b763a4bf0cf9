"""Expectations the verifier turns into real traffic and kernel queries.

Each check type is a kind module of nsbox/kinds/checks/ (found by discovery); the
names below stay importable from here. `Check` is any registered check's dataclass.
"""

from __future__ import annotations

from nsbox.kinds.checks import Check  # noqa: F401
from nsbox.kinds.checks.bind import BindCheck  # noqa: F401
from nsbox.kinds.checks.conntrack import ConntrackCheck  # noqa: F401
from nsbox.kinds.checks.interfaces import InterfacesCheck  # noqa: F401
from nsbox.kinds.checks.link import LinkCheck  # noqa: F401
from nsbox.kinds.checks.neigh import NeighCheck  # noqa: F401
from nsbox.kinds.checks.reach import DENY_KINDS, ReachCheck  # noqa: F401
from nsbox.kinds.checks.route import RouteCheck  # noqa: F401
from nsbox.kinds.ruleref import describe_rule  # noqa: F401
