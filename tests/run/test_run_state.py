"""The host's run state is typed (``ctx.run``) and says each thing once: the quantizer export uses is the
run's, and ``quiet`` / ``--log-json`` live in the reporter alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from tunekit import Quantizer, StageContext
from tunekit.core.context import RunState
from tunekit.core.recipe_model import Recipe
from tunekit.run.export import write_model
from tunekit.run.pipeline import apply_recipe
from tunekit.run.reporting import Reporter


def test_bars_follow_the_reporter() -> None:
    assert RunState(reporter=Reporter()).shows_bars
    assert not RunState(reporter=Reporter(quiet=True)).shows_bars
    assert not RunState(reporter=Reporter(log_json=True)).shows_bars
    assert not RunState().shows_bars and RunState().progress is None  # a library call without a reporter
    reporter = Reporter()
    assert RunState(reporter=reporter).progress == reporter.progress


def test_quiet_is_said_once() -> None:
    with pytest.raises(TypeError, match="inside the reporter"):
        apply_recipe("demo", dry_run=True, quiet=True, reporter=Reporter(quiet=True))


class OwnFormat(Quantizer):
    """Saves the model itself, as GPTQModel's quantizers do."""

    name = "own-format"
    saved: ClassVar[list[Path]] = []

    def bits_per_weight(self) -> float:
        return 4.0

    def save(self, model: Any, out_dir: Path, ctx: StageContext) -> bool:
        OwnFormat.saved.append(out_dir)
        (out_dir / "own.bin").write_bytes(b"weights")
        return True


class _NoSavePretrained:
    """A model whose ``save_pretrained`` must not run: the quantizer wrote the weights."""

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("save_pretrained ran although the quantizer saved the model")


def test_export_saves_through_the_runs_quantizer(tmp_path: Path) -> None:
    OwnFormat.saved.clear()
    ctx = StageContext(recipe=Recipe.model_validate({}), output_dir=tmp_path, log=lambda _: None,
                       run=RunState(stages={"quantizer": OwnFormat()}, recipe_dict={"name": "x"}))
    write_model(_NoSavePretrained(), ctx)
    assert OwnFormat.saved == [tmp_path] and (tmp_path / "own.bin").is_file()
    assert ctx.metrics["export"]["written"] == ["model (own-format format)"]
    assert (tmp_path / "tunekit-recipe.yaml").read_text() == "name: x\n"
