"""The spread verdict is in its kind module (nsbox/kinds/checks/spread.py); name kept here."""

from nsbox.kinds.checks.spread import run_spread  # noqa: F401
