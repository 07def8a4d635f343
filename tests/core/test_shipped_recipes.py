"""Every shipped recipe validates against the installed plugins (both passes and cross-stage checks).

Parametrized over the ``recipes/`` directory, so a new recipe is covered without touching this file.
A recipe naming a plugin that is not installed fails here (it is an error, never a skip).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli.main import cli
from tunekit.core.kinds import KINDS
from tunekit.core.recipe import RECIPE_SUFFIXES, compose, load_recipe, validate_data
from tunekit.core.resources import shipped_recipe_dir

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
RECIPES = sorted(p for p in RECIPES_DIR.iterdir() if p.suffix in RECIPE_SUFFIXES)
BASES = sorted(p for p in (RECIPES_DIR / "base").glob("*") if p.suffix in RECIPE_SUFFIXES)


def test_recipes_are_shipped() -> None:
    assert RECIPES, f"no recipes in {RECIPES_DIR}"
    assert shipped_recipe_dir().resolve() == RECIPES_DIR.resolve()  # a checkout finds its own recipes/


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path) -> None:
    resolved = load_recipe(path)
    recipe = resolved.recipe
    assert recipe.name == path.stem, "a shipped recipe's name is its file name (it is found by that name)"
    assert recipe.description.strip(), "a shipped recipe says what it is for"
    for kind in KINDS:
        if getattr(recipe, kind) is not None:
            assert resolved.stages[kind].name == getattr(recipe, kind)["method"]
    assert load_recipe(path.stem).recipe == recipe  # found by its shipped name too


def test_shipped_bases_pass_the_schema() -> None:
    """Bases (``recipes/base/``) are partial, a child supplies the rest: only pass one applies alone."""
    for path in BASES:
        validate_data(compose(path), source=str(path))


def test_validate_command_accepts_every_shipped_recipe() -> None:
    result = CliRunner().invoke(cli, ["validate", *map(str, RECIPES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(RECIPES)
