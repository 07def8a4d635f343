"""docs/recipes.md documents every recipe field, and is what scripts/gen_recipe_docs.py generates."""

from __future__ import annotations

import importlib.util
import re
import typing
from pathlib import Path

from pydantic import BaseModel

from tunekit.core.recipe_model import Recipe

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "recipes.md"


def generator() -> typing.Any:
    spec = importlib.util.spec_from_file_location("gen_recipe_docs", ROOT / "scripts" / "gen_recipe_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_keys() -> dict[str, set[str]]:
    """``## heading`` -> the keys in the first column of its table."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = set()
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match and current:
            found[current].add(match.group(1))
    return found


def section_models() -> dict[str, type[BaseModel]]:
    models = {}
    for name, info in Recipe.model_fields.items():
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                models[name] = arg
    return models


def test_docs_recipes_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == generator().generate(), (
        "docs/recipes.md is stale: run python scripts/gen_recipe_docs.py")


def test_every_field_of_every_section_is_documented() -> None:
    documented = documented_keys()
    assert set(Recipe.model_fields) <= documented["Top level"]
    models = section_models()
    assert {"model", "train", "eval", "output", "distributed"} <= set(models)
    for name, model in models.items():
        heading = next((h for h in documented if h.startswith(f"`{name}`")), None)
        assert heading, f"docs/recipes.md has no '## `{name}`' section"
        missing = set(model.model_fields) - documented[heading]
        assert not missing, f"docs/recipes.md: section {name} does not document {sorted(missing)}"


def test_every_field_has_a_description() -> None:
    """The reference is only as good as the descriptions it is generated from."""
    models: list[type[BaseModel]] = [Recipe, *section_models().values()]
    for model in models:
        undocumented = [name for name, info in model.model_fields.items() if not info.description]
        assert not undocumented, f"{model.__name__}: fields without description: {undocumented}"
