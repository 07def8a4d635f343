"""Where shipped data lives: in a wheel under ``tunekit/_recipes``, in a checkout at ``recipes/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_recipe_dir() -> Path:
    """The directory of shipped recipes, from an installed wheel or from a source checkout."""
    packaged = Path(str(resources.files("tunekit"))) / "_recipes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "recipes"


def shipped_data_dir() -> Path:
    """Small public-domain text and other data shipped inside the ``tunekit`` package."""
    return Path(str(resources.files("tunekit"))) / "data"
