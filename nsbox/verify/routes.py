"""expect_route / expect_neigh verdicts: now in their kind modules (nsbox/kinds/checks/route.py,
neigh.py); the names stay importable here."""

from nsbox.kinds.checks.neigh import run_neigh  # noqa: F401
from nsbox.kinds.checks.route import run_route  # noqa: F401
