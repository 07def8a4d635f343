"""One module reads text: evaluation, calibration and the readers plugins import all come from core.texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunekit
from tunekit.core import quantization, texts
from tunekit.core.errors import UsageError
from tunekit.core.quantization import CalibrationParams


def words(text: str, **_: object) -> dict[str, list[int]]:
    """A whitespace 'tokenizer': a number is its own id, any other word is 0 (windows are easy to check)."""
    return {"input_ids": [int(w) if w.isdigit() else 0 for w in text.split()]}


def test_the_public_and_old_names_are_the_texts_functions() -> None:
    assert tunekit.calibration_windows is texts.calibration_windows
    assert quantization.calibration_windows is texts.calibration_windows
    assert quantization.read_text is texts.read_text


def test_calibration_reads_emma_by_default_and_never_the_eval_text() -> None:
    path = texts.calibration_path(CalibrationParams(), None)
    assert path == texts.shipped_calibration_paths()[0] and "emma" in path.name
    assert path != texts.shipped_eval_path()
    windows = texts.calibration_windows(words, CalibrationParams(n_samples=3, seq_len=20))
    assert len(windows) == 3 and all(len(w) == 20 for w in windows)


def test_calibration_prefers_the_file_then_the_runs_data(tmp_path: Path) -> None:
    from tunekit.core.context import StageContext
    from tunekit.core.recipe_model import Recipe

    mine, data = tmp_path / "mine.txt", tmp_path / "data.jsonl"
    mine.write_text(" ".join(map(str, range(40))))
    records = [{"text": " ".join(["7"] * 8)}, {"instruction": " ".join(["8"] * 4), "output": " ".join(["9"] * 4)}]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    ctx = StageContext(recipe=Recipe.model_validate({}), data_path=data)
    assert texts.calibration_windows(words, CalibrationParams(file=str(mine), seq_len=16), ctx) == [
        list(range(16)), list(range(16, 32))]
    assert texts.calibration_windows(words, CalibrationParams(seq_len=16), ctx) == [[7] * 8 + [8] * 4 + [9] * 4]
    with pytest.raises(UsageError, match=r"calibration text: .*missing\.txt: text file not found"):
        texts.calibration_windows(words, CalibrationParams(file=str(tmp_path / "missing.txt")))
    with pytest.raises(UsageError, match="fewer than seq_len 17"):
        texts.calibration_windows(words, CalibrationParams(seq_len=17), ctx)


def test_read_text_joins_a_folder_and_refuses_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    assert texts.read_text(tmp_path) == "first\n\nsecond"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no \.txt files"):
        texts.read_text(tmp_path / "empty")


def test_eval_text_is_persuasion_or_the_recipes_file(tmp_path: Path) -> None:
    assert texts.eval_text(None).startswith("Persuasion")
    assert texts.eval_text(texts.EVAL_FILE).startswith("Persuasion")  # shipped data by file name
    with pytest.raises(UsageError, match="evaluation text: "):
        texts.eval_text(tmp_path / "nope.txt")
