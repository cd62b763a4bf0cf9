"""The package list, derived so that no subpackage can be left out of the wheel.

Everything else is in pyproject.toml. pyproject.toml alone cannot say this: its
`packages.find` does not combine with a package that lives elsewhere, and the recipes
live in recipes/ at the top of the repository but ship inside the package as
nsbox._recipes (nsbox.recipe.builtin_dirs looks for them there).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["nsbox", "nsbox.*"]) + ["nsbox._recipes"],
    package_dir={"nsbox._recipes": "recipes"},
)
