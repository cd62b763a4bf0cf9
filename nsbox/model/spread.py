"""The spread check is a check kind (nsbox/kinds/checks/spread.py); names kept here."""

from nsbox.kinds.checks.spread import MAX_PROBES, SpreadCheck, expect_spread  # noqa: F401
