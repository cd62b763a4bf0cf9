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


def recipe_dir(tmp_path: Path, filename: str, text: str) -> str:
    """A recipe directory under TMP_PATH holding FILENAME with TEXT (dedented): what a
    test passes to `nsbox run --recipes DIR`."""
    import textwrap

    d = tmp_path / "recipes"
    d.mkdir()
    (d / filename).write_text(textwrap.dedent(text))
    return str(d)
