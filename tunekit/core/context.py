"""What a pipeline stage gets besides the model: the resolved recipe, data, the run's state, and a way to report."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tunekit.core.arch import ModelArch
    from tunekit.core.kinds import Exporter, Plugin
    from tunekit.core.recipe import Recipe

Phase = Literal["before", "after"]


class RunReporter(Protocol):
    """What the host needs of a run's reporter (``tunekit.run.reporting.Reporter`` is the one it ships).

    Declared here so the run state can name it without ``core`` importing the ``run`` wing.
    """

    quiet: bool
    log_json: bool

    def log(self, message: str) -> None: ...

    def event(self, event: str, **data: Any) -> None: ...

    def progress(self, description: str, total: int | None) -> AbstractContextManager[Callable[[int], None]]: ...


@dataclass
class RunState:
    """The host's own state of one ``tunekit apply`` run, typed; ``StageContext.extras`` is left to plugins.

    Why one object: the pipeline, training and export share these values, and a misspelt dict key would
    read as "not set" instead of failing. Plugins may read it (the PEFT merge re-applies ``stages``).
    """

    stages: Mapping[str, Plugin] = field(default_factory=dict)
    """The recipe's plugins by slot (``quantizer``, ``adapter``, ...), as the run resolved them."""
    exporters: Sequence[Exporter] = ()
    """``output.formats`` resolved to exporter plugins; the export stage runs each."""
    gguf_file: str | None = None
    """The GGUF file inside ``ctx.model_path`` the model loads from, when it is one."""
    checkpoint_dir: Path | None = None
    """Where training checkpoints go: beside the output, so they survive a failed run."""
    resume: bool | str = False
    """``--resume``: True for the newest complete checkpoint, or a checkpoint folder."""
    training_args: dict[str, Any] = field(default_factory=dict)
    """Extra ``TrainingArguments`` kwargs that override the recipe's (library callers, launchers)."""
    recipe_dict: dict[str, Any] = field(default_factory=dict)
    """The resolved recipe as written to ``tunekit-recipe.yaml`` and the model card."""
    plan: dict[str, Any] = field(default_factory=dict)
    """The plan printed before loading (stages, plugins, checks)."""
    reporter: RunReporter | None = None
    """How the run talks; None for a library call that wants no progress bars."""
    phase: Phase = "after"
    """Which perplexity the ``evaluate`` stage measures now."""
    unquantized: bool = False
    """True while the baseline of a quantize-on-load run loads without its quantizer."""
    is_main: bool = True
    """Whether this process is rank 0 (the one that writes the output and logs to trackers)."""
    state_dict: dict[str, Any] | None = None
    """Whole weights training gathered on rank 0 under FSDP/ZeRO-3; export saves them instead of the shard."""

    @property
    def shows_bars(self) -> bool:
        """Whether progress bars draw: not with ``--quiet``, not with ``--log-json`` (a bar would garble the
        JSON lines), not without a reporter."""
        return self.reporter is not None and not (self.reporter.quiet or self.reporter.log_json)

    @property
    def progress(self) -> Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]] | None:
        """The reporter's progress-bar factory for long loops, or None without a reporter."""
        return self.reporter.progress if self.reporter is not None else None


@dataclass
class StageContext:
    """Shared state of one ``tunekit apply`` run, passed to every stage.

    ``device`` is where the model's weights are ("cpu", "cuda:0"): known before loading from the recipe's
    ``device_map`` (a quantize-on-load method reads it in ``load_kwargs``), then set from the loaded model.
    ``metrics`` is where stages record numbers for ``metrics.json`` and the model card, under their
    own key. ``log`` prints (or emits JSON lines) through the run's reporter. ``run`` is the host's own
    typed state; ``extras`` is free for plugins to pass values between their stages.
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
    run: RunState = field(default_factory=RunState)
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
