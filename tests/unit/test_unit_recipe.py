"""Recipe discovery, lookup, --set parameters and build errors, no kernel."""

import re
import textwrap
from pathlib import Path

import pytest

from nsbox import recipe
from nsbox.errors import RecipeError, UsageError, ValidationError
from nsbox.model import Lab
from nsbox.recipe import Param
from tests.support.paths import REPO



@pytest.fixture(autouse=True)
def no_recipe_path(monkeypatch):
    monkeypatch.delenv(recipe.RECIPE_PATH_ENV, raising=False)


def write_recipe(folder: Path, filename: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(body))
    return path


TINY = """
    from nsbox.recipe import Param, recipe

    @recipe("tiny", params=[Param("count", 1, "how many", min=1, max=3), Param("fast", False)])
    def build(lab, count, fast):
        '''A tiny lab for tests.

        More text that nsbox list does not show.'''
        for i in range(count):
            lab.node(f"n{i}")
        lab.description = f"count={count} fast={fast}"
        lab.expect("n0", "n0", "icmp")
"""


# -- discovery --

def test_discover_finds_bridge_mode():
    found = recipe.discover()
    assert "bridge-mode" in found
    r = found["bridge-mode"]
    assert r.description.startswith("Docker's default bridge (docker0)")
    assert "\n" not in r.description
    assert Path(r.path) == REPO / "recipes" / "bridge_mode.py"
    p = r.params[0]  # containers (then ipv6, docker: the docker kit's switches)
    assert (p.name, p.default, p.min, p.max) == ("containers", 2, 2, 1000)


def test_extra_dir_is_discovered(tmp_path):
    write_recipe(tmp_path, "tiny.py", TINY)
    found = recipe.discover([str(tmp_path)])
    assert {"tiny", "bridge-mode"} <= set(found)
    assert found["tiny"].description == "A tiny lab for tests."
    assert found["tiny"].path == str(tmp_path / "tiny.py")


def test_env_recipe_path_is_discovered(tmp_path, monkeypatch):
    write_recipe(tmp_path / "a", "tiny.py", TINY)
    monkeypatch.setenv(recipe.RECIPE_PATH_ENV, str(tmp_path / "a"))
    assert "tiny" in recipe.discover()


def test_a_recipe_may_not_replace_another(tmp_path):
    write_recipe(tmp_path, "mine.py", """
        from nsbox.recipe import recipe

        @recipe("bridge-mode")
        def build(lab):
            '''My own bridge-mode.'''
    """)
    with pytest.raises(UsageError, match="a recipe may not replace another"):
        recipe.get("bridge-mode", [str(tmp_path)])
    assert recipe.get("bridge-mode").description != "My own bridge-mode."


def test_underscore_files_and_non_python_files_are_ignored(tmp_path):
    write_recipe(tmp_path, "_helper.py", "raise RuntimeError('must not be imported')\n")
    write_recipe(tmp_path, "notes.txt", "not python")
    write_recipe(tmp_path, "tiny.py", TINY)
    assert "tiny" in recipe.discover([str(tmp_path)])


def test_missing_extra_dir_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        recipe.discover([str(tmp_path / "nope")])


def test_recipe_without_docstring_has_empty_description(tmp_path):
    write_recipe(tmp_path, "bare.py", """
        from nsbox.recipe import recipe

        @recipe("bare")
        def build(lab):
            pass
    """)
    assert recipe.get("bare", [str(tmp_path)]).description == ""


# -- lookup --

def test_get_unknown_recipe_suggests_the_close_one():
    with pytest.raises(UsageError) as e:
        recipe.get("bridge-mod")
    # the closest first (other *-mode recipes may follow)
    assert str(e.value).startswith("unknown recipe 'bridge-mod'; did you mean bridge-mode")
    assert e.value.exit_code == 2


def test_get_far_off_name_lists_known_recipes():
    with pytest.raises(UsageError, match="unknown recipe 'zzzzzz'; known: .*bridge-mode"):
        recipe.get("zzzzzz")


# -- parameters --

def test_build_with_defaults():
    lab = recipe.get("bridge-mode").build()
    assert isinstance(lab, Lab)
    assert lab.name == "bridge-mode"
    assert {"c1", "c2"} <= set(lab.nodes) and "c3" not in lab.nodes


def test_build_with_override():
    lab = recipe.get("bridge-mode").build({"containers": "3"})
    assert "c3" in lab.nodes and "c4" not in lab.nodes


@pytest.mark.parametrize("overrides, words", [
    ({"containers": "abc"}, "expected an integer, got 'abc'"),
    ({"containers": "2.5"}, "expected an integer"),
    ({"containers": ""}, "expected an integer"),
    ({"containers": "1"}, "containers=1: must be between 2 and 1000"),
    ({"containers": "1001"}, "must be between 2 and 1000"),
    ({"containers": "-5"}, "must be between 2 and 1000"),
    ({"nope": "1"}, "recipe bridge-mode has no parameter 'nope' (parameters: containers, ipv6, docker)"),
])
def test_bad_set_values_raise_usage_error(overrides, words):
    with pytest.raises(UsageError) as e:
        recipe.get("bridge-mode").build(overrides)
    assert not isinstance(e.value, RecipeError)
    assert words in str(e.value)


def test_param_bounds_are_inclusive():
    p = Param("containers", 2, min=2, max=1000)
    assert p.parse("2") == 2 and p.parse("1000") == 1000


@pytest.mark.parametrize("text, value", [("true", True), ("YES", True), ("1", True), ("on", True),
                                         ("false", False), ("No", False), ("0", False), ("off", False)])
def test_bool_param(text, value):
    assert Param("fast", False).parse(text) is value


def test_bad_bool_param():
    with pytest.raises(UsageError, match="--set fast: expected true or false, got 'maybe'"):
        Param("fast", False).parse("maybe")


def test_string_param_is_taken_as_is():
    assert Param("mode", "bridge").parse("vepa") == "vepa"


def test_overrides_reach_the_build_function(tmp_path):
    write_recipe(tmp_path, "tiny.py", TINY)
    lab = recipe.get("tiny", [str(tmp_path)]).build({"count": "3", "fast": "yes"})
    assert set(lab.nodes) == {"host", "n0", "n1", "n2"}
    assert lab.description == "count=3 fast=True"


def test_recipe_without_params_names_none(tmp_path):
    write_recipe(tmp_path, "bare.py", """
        from nsbox.recipe import recipe

        @recipe("bare")
        def build(lab):
            pass
    """)
    with pytest.raises(UsageError, match=r"\(parameters: none\)"):
        recipe.get("bare", [str(tmp_path)]).build({"x": "1"})


def test_one_sided_bound_message_has_no_none():
    with pytest.raises(UsageError) as e:
        Param("count", 1, max=5).parse("9")
    assert "None" not in str(e.value)


# -- broken recipes --

def test_build_function_that_raises_becomes_recipe_error(tmp_path):
    write_recipe(tmp_path, "boom.py", """
        from nsbox.recipe import recipe

        @recipe("boom")
        def build(lab):
            '''Explodes.'''
            raise KeyError("eth0")
    """)
    r = recipe.get("boom", [str(tmp_path)])
    with pytest.raises(RecipeError) as e:
        r.build()
    assert e.value.exit_code == 2
    assert str(e.value).endswith("boom.py:7: recipe boom failed to build its model: KeyError: 'eth0'")


def test_builder_validation_error_is_not_wrapped(tmp_path):
    write_recipe(tmp_path, "badaddr.py", """
        from nsbox.recipe import recipe

        @recipe("badaddr")
        def build(lab):
            lab.host.bridge("br0", "10.0.0.300/24")
    """)
    with pytest.raises(ValidationError, match="bad address '10.0.0.300/24'"):
        recipe.get("badaddr", [str(tmp_path)]).build()


def test_recipe_file_with_syntax_error(tmp_path):
    path = write_recipe(tmp_path, "broken.py", "def build(lab:\n    pass\n")
    with pytest.raises(RecipeError) as e:
        recipe.get("anything", [str(tmp_path)])
    assert recipe.catalogue([str(tmp_path)]).broken  # listed, hiding nothing else
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert "SyntaxError" in msg
    assert e.value.exit_code == 2


def test_recipe_file_that_fails_to_import(tmp_path):
    path = write_recipe(tmp_path, "noimport.py", "import nsbox_no_such_module\n@recipe('anything')\ndef b(lab): pass\n")
    with pytest.raises(UsageError, match=re.escape(f"{path}:1: cannot load recipe file: ModuleNotFoundError")):
        recipe.get("anything", [str(tmp_path)])


def test_recipe_error_is_one_line_even_for_multiline_exceptions(tmp_path):
    write_recipe(tmp_path, "multi.py", """
        from nsbox.recipe import recipe

        @recipe("multi")
        def build(lab):
            raise RuntimeError("first line\\nsecond line")
    """)
    with pytest.raises(RecipeError) as e:
        recipe.get("multi", [str(tmp_path)]).build()
    assert "\n" not in str(e.value)
