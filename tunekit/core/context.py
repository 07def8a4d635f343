"""What a pipeline stage gets besides the model: the resolved recipe, data, and a way to report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.core.arch import ModelArch
    from tunekit.core.recipe import Recipe


@dataclass
class StageContext:
    """Shared state of one ``tunekit apply`` run, passed to every stage.

    ``metrics`` is where stages record numbers for ``metrics.json`` and the model card, under their
    own key. ``log`` prints (or emits JSON lines) through the run's reporter.
    """

    recipe: Recipe
    model_path: Path | None = None
    output_dir: Path | None = None
    arch: ModelArch | None = None
    tokenizer: Any = None
    device: str = "cpu"
    data_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print
    extras: dict[str, Any] = field(default_factory=dict)

    def output_file(self, name: str) -> Path:
        """Where a stage writes ``name`` in the output; refuses absolute paths and ``..``."""
        from tunekit.core.output_paths import inside

        if self.output_dir is None:
            raise RuntimeError("no output folder yet: files are written in the export stage")
        return inside(self.output_dir, name)

    def record(self, stage: str, **values: Any) -> None:
        """Record numbers for ``metrics.json`` under the stage's name."""
        self.metrics.setdefault(stage, {}).update(values)
