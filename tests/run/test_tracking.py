"""Run tracking: a tiny fine-tune with ``train.report_to: [mlflow]`` leaves one MLflow run in a real local
store, holding the Trainer's loss curve and tunekit's own numbers and recipe."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tunekit.core.errors import MissingDependencyError
from tunekit.run import tracking


def test_numbers_flatten_finite_scalars_only() -> None:
    metrics = {"evaluate": {"perplexity_before": 12.5, "perplexity_after": 11.0, "eval_windows": 3},
               "train": {"loss_curve": [[1, 2.0]], "eval_loss": None, "resumed": False, "bad": float("nan")},
               "run": {"peak_memory_mb": 512}}
    assert tracking.numbers(metrics) == {"tunekit.evaluate.perplexity_before": 12.5,
                                         "tunekit.evaluate.perplexity_after": 11.0,
                                         "tunekit.evaluate.eval_windows": 3.0, "tunekit.run.peak_memory_mb": 512.0}


def test_a_missing_tracker_is_named_with_its_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in {"mlflow", "wandb"} else real(name, *a, **k))
    with pytest.raises(MissingDependencyError, match=r"tunekit\[track\]"):
        tracking.check_installed(["mlflow"])
    with pytest.raises(MissingDependencyError, match="pip install mlflow wandb"):
        tracking.check_installed(["mlflow", "wandb"])


def test_a_tiny_fine_tune_logs_one_mlflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny not installed (pip install 'tunekit[track]')")
    from tunekit.run.pipeline import apply_recipe
    from tunekit.testing import save_tiny_model

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no SQLite store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tunekit-test")
    model = tmp_path / "model"
    save_tiny_model(model, max_position_embeddings=128)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: tracked\nadapter: {method: lora, r: 2}\n"
                      "train: {data: calibration_austen_emma.txt, seq_len: 64, batch_size: 2, max_steps: 3,\n"
                      "        lr: 1.0e-3, eval_split: 0.2, max_samples: 20, report_to: [mlflow]}\n"
                      "eval: {seq_len: 64, max_tokens: 256}\n")
    out = tmp_path / "out"
    apply_recipe(recipe, model=model, output=out, quiet=True)
    assert mlflow.active_run() is None
    metrics = json.loads((out / "metrics.json").read_text())

    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("tunekit-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    losses = client.get_metric_history(run.info.run_id, "loss")  # the Trainer's curve, one point a step
    assert [m.step for m in losses] == [1, 2, 3]
    assert [m.value for m in losses] == pytest.approx([loss for _, loss in metrics["train"]["loss_curve"]], rel=1e-3)
    logged = run.data.metrics
    for phase in ("before", "after"):
        assert logged[f"tunekit.evaluate.perplexity_{phase}"] == metrics["evaluate"][f"perplexity_{phase}"]
    assert logged["tunekit.run.peak_memory_mb"] == metrics["run"]["peak_memory_mb"]
    assert run.data.params["tunekit.adapter"] == "lora"
    assert "learning_rate" in run.data.params  # the Trainer's own params went to the same run
    recipe_file = Path(client.download_artifacts(run.info.run_id, "tunekit-recipe.yaml", str(tmp_path / "dl")))
    assert "report_to" in recipe_file.read_text()
