"""Input paths in a recipe mean the same file wherever the command runs: relative to the recipe's folder.

Why: ``extends`` already resolves against the extending file, so ``train.data: data/x.jsonl`` beside a
recipe must too; read against the working directory, the same recipe found a different file (or none,
reported only after the model had loaded). Each file of an ``extends`` chain anchors its own paths,
before merging, so a parent's ``train.data`` stays the parent's. ``--set`` values are typed at the shell
and stay relative to the working directory (they are applied after composition). Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.core.errors import RecipeError
from tunekit.core.input_files import check_text_file
from tunekit.core.resources import shipped_data_dir

INPUT_FILES = (("train", "data"), ("eval", "data"), ("eval", "references"))
"""Recipe keys naming files that a run reads."""

MODEL_PATH = ("model", "path")
"""Also anchored, but only when the file exists beside the recipe: otherwise it may be a hub id."""


def _exists(path: Path) -> bool:
    """``path.exists()`` that answers False for names the OS refuses (too long, bad bytes): the recipe's
    loader then reports the missing file with its key, instead of a traceback from here."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _anchor(value: str, folder: Path, *, only_if_exists: bool) -> str:
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = folder / path
    if _exists(candidate):
        return str(candidate)
    if only_if_exists or (len(path.parts) == 1 and _exists(shipped_data_dir() / path)):
        return value  # a hub id, or shipped data named by file name (train.data: austen_instruct.jsonl)
    return str(candidate)


def anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` (one recipe document) with its relative input paths made absolute against ``folder``."""
    for (section, key), only_if_exists in [*((k, False) for k in INPUT_FILES), (MODEL_PATH, True)]:
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and block[key]:
            data[section] = {**block, key: _anchor(block[key], folder, only_if_exists=only_if_exists)}
    return data


def check_input_files(recipe: Any, *, source: str, skip_train_data: bool = False) -> None:
    """Every file the recipe says it reads exists (before any weight loads; ``--dry-run`` runs this too).

    ``skip_train_data`` when ``--data`` replaces ``train.data``. Raises ``RecipeError`` naming the key.
    """
    wanted: list[tuple[str, str | None]] = [("eval.data", recipe.eval.data),
                                            ("eval.references", recipe.eval.references)]
    if recipe.train is not None and not skip_train_data:
        wanted.insert(0, ("train.data", recipe.train.data))
    for key, value in wanted:
        if not value:
            continue
        path = Path(value).expanduser()
        if _exists(path):
            if key.startswith("eval."):  # evaluation reads text; a binary or Latin-1 file fails here, not later
                check_text_file(path, "evaluation text" if key == "eval.data" else "references")
            continue
        if len(path.parts) == 1 and _exists(shipped_data_dir() / path):
            continue
        raise RecipeError(f"{value} does not exist (relative paths are read from the recipe's folder)",
                          source=source, key=key)
