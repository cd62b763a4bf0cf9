"""Where things are: the checkout, the test data and the observer scripts.

Tests find their files through these names, never through `Path(__file__)` arithmetic,
so a test file can move between tests/unit/ and tests/kernel/ without its paths breaking.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]   # tests/
REPO = TESTS.parent                           # the checkout
DATA = TESTS / "data"                         # recipes, goldens and reference dumps the tests read
SUPPORT = TESTS / "support"
OBSERVERS = SUPPORT / "observers"             # independent observers run inside a live lab (--then)
