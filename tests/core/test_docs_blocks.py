"""The YAML recipe blocks in README.md and docs/ load as recipes (a docs example that fails is a bug).

Shell command blocks run in test_docs_commands.py (the hook examples in test_plugin_docs.py); this covers
every recipe, whole or a fragment of recipe sections, so an ``extends:`` parent that does not exist or a
renamed key is caught when it changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tunekit.core.recipe import load_recipe
from tunekit.core.recipe_model import Recipe

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = set(Recipe.model_fields) | {"extends"}


def recipe_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, match in enumerate(re.finditer(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            data = yaml.safe_load(match.group(1))
            if isinstance(data, dict) and data and set(data) <= SECTIONS:
                found.append((f"{doc.name}#{n}", match.group(1)))
    return found


def test_the_docs_hold_recipe_blocks() -> None:
    names = [name for name, _ in recipe_blocks()]
    assert any(name.startswith("concepts.md") for name in names) and len(names) >= 3


@pytest.mark.parametrize("name,body", recipe_blocks(), ids=[name for name, _ in recipe_blocks()])
def test_recipe_block_loads(name: str, body: str, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    if not ({"name", "extends"} & set(yaml.safe_load(body))):
        body = "extends: lora-demo\n" + body  # a fragment: shown as sections added to a training recipe
    path.write_text(body)
    load_recipe(path)


def test_plugin_quick_start_installs_the_test_extra() -> None:
    """pytest is in the scaffold's [test] extra, not in tunekit's own install."""
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert "pip install -e './tunekit-demo[test]'" in text
    from tunekit.authoring.scaffold_templates import COMMON

    assert 'test = ["pytest' in COMMON["pyproject"]
