"""`nsbox run NAME` reads the shipped recipe NAME from its own file alone
(recipe._shipped_file); that is only right while every shipped recipe lives in
the file named after it and no other shipped file claims its name."""

from nsbox import recipe


def test_every_shipped_recipe_is_in_the_file_named_after_it():
    idx = recipe.index()
    assert idx.files and not idx.broken
    for name, path in idx.files.items():
        assert path.name == name.replace("-", "_") + ".py", f"{name} is defined in {path}"
        assert recipe._shipped_file(name) == path


def test_no_two_shipped_files_claim_one_name():
    seen: dict[str, str] = {}
    for d in recipe.builtin_dirs():
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            for name in recipe.static_names(path):
                assert name not in seen, f"{name} in both {seen[name]} and {path}"
                seen[name] = str(path)


def test_names_that_are_not_recipe_names_go_to_the_index():
    for bad in ("../etc/passwd", "Bridge-Mode", "a/b", "", "x" * 60, "bridge_mode"):
        assert recipe._shipped_file(bad) is None
