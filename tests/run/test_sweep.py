"""``tunekit sweep``: grid parsing, validation before running, ranking, and the table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tunekit.core.errors import RecipeError, TunekitError, UsageError
from tunekit.run.sweep import SweepRow, label_of, parse_grid, rank, run_sweep, split_values, variants

RECIPE = """
name: sweep-test
adapter: {method: lora, r: 4}
train: {max_steps: 1}
"""


@pytest.fixture
def recipe(tmp_path: Path) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return str(path)


def test_grid_is_the_product_of_its_keys() -> None:
    grid = parse_grid(["adapter.r=8,16,32", "adapter.alpha=16,32"])
    plans = variants(grid)
    assert len(plans) == 6 and plans[0] == ["adapter.r=8", "adapter.alpha=16"]
    assert plans[-1] == ["adapter.r=32", "adapter.alpha=32"]
    assert label_of(plans[0]) == "r=8 alpha=16"


def test_list_values_keep_their_commas() -> None:
    assert split_values("[q_proj,v_proj],all-linear") == ["[q_proj,v_proj]", "all-linear"]


@pytest.mark.parametrize("spec", ["adapter.r", "adapter.r=", "=8", "adapter.r=8,,16"])
def test_bad_grid_specs(spec: str) -> None:
    with pytest.raises(UsageError, match="--grid"):
        parse_grid([spec])


def test_every_variant_is_validated_before_any_runs(recipe: str, tmp_path: Path) -> None:
    calls: list[Any] = []
    with pytest.raises(RecipeError, match=r"adapter\.r"):
        run_sweep(recipe, ["adapter.r=8,0"], output=tmp_path / "out", runner=lambda *a, **k: calls.append(a) or {},
                  log=lambda _: None)
    assert calls == []


def fake_runner(losses: dict[str, float | None]) -> Any:
    """Stands in for the pipeline: returns what the train and adapter stages record for each rank."""

    def runner(recipe: str, *, overrides: list[str], output: Path, **_: Any) -> dict[str, Any]:
        r = next(o.split("=")[1] for o in overrides if o.startswith("adapter.r="))
        loss = losses[r]
        if loss is None:
            raise TunekitError("out of memory")
        return {"adapter": {"trainable_params": int(r) * 1000},
                "train": {"eval_loss": loss, "time_s": 1.5, "peak_memory_mb": 100.0, "trainable_params": int(r) * 1000}}

    return runner


def test_rows_are_ranked_best_first_and_failures_are_kept(recipe: str, tmp_path: Path) -> None:
    rows = run_sweep(recipe, ["adapter.r=8,16,32"], output=tmp_path / "out", log=lambda _: None,
                     runner=fake_runner({"8": 2.5, "16": 2.1, "32": None}))
    assert [r.label for r in rows] == ["r=16", "r=8", "r=32"]
    assert rows[0].perplexity == pytest.approx(math.exp(2.1), rel=1e-4) and rows[0].trainable_params == 16000
    assert rows[-1].error == "out of memory" and rows[-1].eval_loss is None
    assert rows[0].output.startswith(str(tmp_path / "out")) and len({r.output for r in rows}) == 3


def test_rank_puts_rows_without_loss_last() -> None:
    rows = [SweepRow("a", [], "o"), SweepRow("b", [], "o", eval_loss=3.0), SweepRow("c", [], "o", eval_loss=1.0)]
    assert [r.label for r in rank(rows)] == ["c", "b", "a"]


def test_sweep_command_prints_the_table(recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.cli.main import cli
    from tunekit.run import sweep

    monkeypatch.setattr(sweep, "default_runner", fake_runner({"8": 2.5, "16": 2.1}))
    result = CliRunner().invoke(cli, ["sweep", recipe, "--grid", "adapter.r=8,16", "--output", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "r=16" in result.output and "8.17" in result.output  # exp(2.1)
    assert result.output.index("r=16") < result.output.index("r=8 ")
    as_json = CliRunner().invoke(cli, ["sweep", recipe, "--grid", "adapter.r=8,16", "--json",
                                       "--output", str(tmp_path / "j")])
    assert [row["label"] for row in json.loads(as_json.output)] == ["r=16", "r=8"]


def test_sweep_of_a_recipe_without_training_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("adapter: {method: lora}\n")
    with pytest.raises(UsageError, match="no train section"):
        run_sweep(str(path), ["adapter.r=8,16"], output=tmp_path / "o", runner=lambda *a, **k: {})


def test_sweep_runs_real_fine_tunes_through_the_pipeline(tmp_path: Path) -> None:
    """No stand-in: each variant is a real `tunekit apply` of a tiny Llama; the table reads its metrics.json."""
    from tunekit.cli.main import cli
    from tunekit.testing import save_tiny_model

    model = tmp_path / "model"
    save_tiny_model(model, max_position_embeddings=128)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: tiny-sweep\nadapter: {method: lora, r: 2}\n"
                      "train: {data: calibration_austen_emma.txt, seq_len: 64, batch_size: 2, max_steps: 2,\n"
                      "        lr: 1.0e-3, eval_split: 0.2, max_samples: 20}\n"
                      "eval: {perplexity: false}\n")
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, ["sweep", str(recipe), "--grid", "adapter.r=2,8", "--model", str(model),
                                      "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # progress goes to stderr; stdout is only the JSON
    assert sorted(row["label"] for row in rows) == ["r=2", "r=8"] and all(row["error"] is None for row in rows)
    by_rank = {row["label"]: row for row in rows}
    # every number comes from the run's own metrics.json; r=8 trains 4x the parameters of r=2
    for row in rows:
        metrics = json.loads((Path(row["output"]) / "metrics.json").read_text())
        assert row["eval_loss"] == metrics["train"]["eval_loss"] and math.isfinite(row["eval_loss"])
        assert row["trainable_params"] == metrics["train"]["trainable_params"] and row["time_s"] > 0
        saved = (Path(row["output"]) / "tunekit-recipe.yaml").read_text()
        assert f"r: {row['label'].split('=')[1]}" in saved
    assert by_rank["r=8"]["trainable_params"] == 4 * by_rank["r=2"]["trainable_params"]
    assert [row["eval_loss"] for row in rows] == sorted(row["eval_loss"] for row in rows)
