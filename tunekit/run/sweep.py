"""Grid search over recipe keys: every combination runs through the pipeline, ranked by held-out loss.

``--grid adapter.r=8,16,32 --grid adapter.alpha=16,32`` is six ``--set`` override lists; each variant
is validated before anything runs (a typo fails the sweep at once, not after an hour), then run into
its own output folder. A variant that fails is reported in the table and the others carry on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunekit.core.errors import TunekitError, UsageError

Runner = Callable[..., dict[str, Any]]
"""Runs one variant: ``runner(recipe, overrides=[...], output=Path, model=, data=)`` -> metrics dict."""


@dataclass
class SweepRow:
    """One variant's measured numbers (None where the run did not produce them)."""

    label: str
    overrides: list[str]
    output: str
    eval_loss: float | None = None
    perplexity: float | None = None
    trainable_params: int | None = None
    time_s: float | None = None
    peak_memory_mb: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_values(raw: str) -> list[str]:
    """Split on commas that are not inside brackets, so ``targets=[q_proj,v_proj],all-linear`` is two values."""
    values, depth, current = [], 0, ""
    for char in raw:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``KEY=V1,V2`` strings -> ``[(KEY, [V1, V2])]``; values stay text, parsed as YAML by ``--set``."""
    grid = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        values = split_values(raw) if sep else []
        if not key.strip() or not values or not all(values):
            raise UsageError(f"--grid expects KEY=V1,V2,..., got '{spec}'")
        grid.append((key.strip(), values))
    keys = [k for k, _ in grid]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--grid names a key twice: {keys}")
    return grid


def variants(grid: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The cartesian product, as ``--set`` override lists."""
    keys = [k for k, _ in grid]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(vs for _, vs in grid))]


def label_of(overrides: list[str]) -> str:
    """``adapter.r=8`` + ``adapter.alpha=16`` -> ``r=8 alpha=16`` (the last key segment names it)."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, _, v in (o.partition("=") for o in overrides))


def folder_of(index: int, label: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label.replace("=", ""))
    return f"{index:02d}-{safe.strip('-')}"[:80]


def row_from_metrics(row: SweepRow, metrics: dict[str, Any]) -> SweepRow:
    """Read the numbers the training and adapter stages recorded (``ctx.record``) into a row."""
    train = metrics.get("train") or {}
    row.eval_loss = train.get("eval_loss")
    row.perplexity = train.get("eval_perplexity")
    if row.perplexity is None and row.eval_loss is not None:
        row.perplexity = round(math.exp(row.eval_loss), 4)
    row.trainable_params = train.get("trainable_params") or (metrics.get("adapter") or {}).get("trainable_params")
    row.time_s = train.get("time_s")
    row.peak_memory_mb = train.get("peak_memory_mb")
    return row


def rank(rows: list[SweepRow]) -> list[SweepRow]:
    """Best (lowest held-out loss) first; variants without a loss (failed, or no eval split) last."""
    return sorted(rows, key=lambda r: (r.eval_loss is None, r.eval_loss if r.eval_loss is not None else 0.0))


def default_runner(recipe: str, *, overrides: list[str], output: Path, model: str | None, data: str | None,
                   force: bool = False, quiet: bool = True) -> dict[str, Any]:
    """Run one variant through the pipeline's library entry point and return its metrics."""
    from tunekit.run.pipeline import apply_recipe

    result = apply_recipe(recipe, model=model, data=data, output=output, overrides=overrides, force=force,
                          quiet=quiet)
    return result.metrics


def run_sweep(
    recipe: str,
    grid_specs: list[str],
    *,
    output: Path,
    model: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
) -> list[SweepRow]:
    """Validate every variant, run each into ``output/NN-label``, return the rows ranked best first."""
    from tunekit.core.recipe import load_recipe

    grid = parse_grid(grid_specs)
    plans = [[*(overrides or []), *v] for v in variants(grid)]
    for plan in plans:
        resolved = load_recipe(recipe, overrides=plan)
        if resolved.recipe.train is None:
            raise UsageError(f"{recipe}: a sweep compares fine-tunes; the recipe has no train section")
    runner = runner or default_runner
    rows = []
    for index, plan in enumerate(plans, 1):
        label = label_of(plan[len(overrides or []):])
        row = SweepRow(label=label, overrides=plan, output=str(output / folder_of(index, label)))
        log(f"sweep {index}/{len(plans)}: {label}")
        try:
            metrics = runner(recipe, overrides=plan, output=Path(row.output), model=model, data=data, force=force)
        except TunekitError as exc:
            row.error = str(exc)
            log(f"sweep {index}/{len(plans)}: {label} failed: {exc}")
        else:
            row_from_metrics(row, metrics)
        rows.append(row)
    return rank(rows)
