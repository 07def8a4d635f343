"""Run tracking: ``train.report_to`` goes to the Trainer, and tunekit's own numbers go to the same run.

The Trainer's MLflow callback logs the loss curve and its arguments; it reuses an MLflow run that is
already active and then leaves it open. So tunekit opens the run when the model starts loading (the
"before" perplexity belongs to it), lets the Trainer log into it, and at the end of the export stage logs
what only tunekit knows (perplexity before/after, peak memory, timings, the recipe) and closes it. A
failing stage closes it as FAILED. This is a ``tunekit_run_stage`` wrapper, registered beside the host
stages; it does nothing for a recipe that does not ask for tracking.

MLflow reads ``MLFLOW_TRACKING_URI`` (``sqlite:///mlflow.db`` with the full ``mlflow`` package, or a
``file:`` store with ``MLFLOW_ALLOW_FILE_STORE=true`` with ``mlflow-skinny``) and ``MLFLOW_EXPERIMENT_NAME``.
TensorBoard and W&B get the Trainer's own logging only.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import MissingDependencyError
from tunekit.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from tunekit.core.context import StageContext
    from tunekit.core.kinds import Plugin

PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}
"""report_to name -> the module the Trainer's callback imports."""

TRACKER_NAME = "tunekit-run-tracking"


def report_to(ctx: StageContext) -> list[str]:
    train = ctx.recipe.train
    return list(train.report_to) if train is not None else []


def check_installed(targets: list[str]) -> None:
    """Fail before the model loads when a tracker the recipe names is not installed."""
    missing = [PACKAGES[t] for t in targets if importlib.util.find_spec(PACKAGES[t]) is None]
    if missing:
        raise MissingDependencyError(f"train.report_to needs {', '.join(missing)}: pip install 'tunekit[track]'"
                                     if missing == ["mlflow"] else
                                     f"train.report_to needs {', '.join(missing)}: pip install {' '.join(missing)}")


def numbers(metrics: dict[str, Any], prefix: str = "tunekit") -> dict[str, float]:
    """Every finite number in the run's metrics, flattened to ``tunekit.<stage>.<key>`` (curves left out:
    the Trainer logs the loss per step itself)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(numbers(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def _start_mlflow(ctx: StageContext) -> None:
    import mlflow

    recipe = ctx.recipe
    run = mlflow.start_run(run_name=recipe.name or "tunekit")
    ctx.extras["mlflow_run_id"] = run.info.run_id
    stages = ctx.run.stages
    mlflow.log_params({f"tunekit.{kind}": getattr(plugin, "name", "?") for kind, plugin in stages.items()})


def _finish_mlflow(ctx: StageContext, *, failed: bool) -> None:
    import mlflow

    run_id = ctx.extras.pop("mlflow_run_id", None)
    if run_id is None:
        return
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        mlflow.start_run(run_id=run_id)  # the Trainer ended it (another callback, an exception): reopen
    if not failed:
        mlflow.log_metrics(numbers(ctx.metrics))
        mlflow.log_dict(ctx.run.recipe_dict, "tunekit-recipe.yaml")
    mlflow.end_run(status="FAILED" if failed else "FINISHED")


class RunTracker:
    """The ``tunekit_run_stage`` wrapper that opens and closes the tracking run around the stages."""

    @hookimpl(wrapper=True)
    def tunekit_run_stage(self, stage: str, plugin: Plugin | None, model: Any,
                          ctx: StageContext) -> Generator[None, Any, Any]:
        targets = report_to(ctx)
        mlflow_on = "mlflow" in targets and ctx.run.is_main
        if stage == "load" and targets:
            check_installed(targets)
            if mlflow_on:
                _start_mlflow(ctx)
        try:
            result = yield
        except BaseException:
            if mlflow_on:
                _finish_mlflow(ctx, failed=True)
            raise
        if stage == "export" and mlflow_on:
            _finish_mlflow(ctx, failed=False)
        return result
