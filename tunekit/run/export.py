"""The export stage: what goes into the output folder, so transformers, PEFT and servers load it unchanged.

Order: the model (a quantizer's own ``save`` when it has one and returns True, else ``save_pretrained``;
a PEFT model saves its adapter, and ``merged`` / ``output.merge`` adds the merged model), the tokenizer,
exporter plugins (``output.formats``), ``generation_config.json``, ``tunekit-recipe.yaml`` (resolved),
then (:func:`write_report`, after the stage's timing is known) ``metrics.json`` and the ``README.md``
model card. Everything lands in the run's temporary folder; the
pipeline renames it into place afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tunekit.core.formats import BUILTIN_FORMATS, parse_format
from tunekit.core.kinds import Adapter
from tunekit.run.exporters import run_exporters
from tunekit.run.model_card import render_card

if TYPE_CHECKING:
    from tunekit.core.context import StageContext


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_model(model: Any, ctx: StageContext) -> None:
    """Write every file of the output into ``ctx.output_dir``."""
    out = Path(ctx.output_dir)  # type: ignore[arg-type]
    recipe = ctx.recipe
    names = {parse_format(f)[0] for f in recipe.output.formats if parse_format(f)[0] in BUILTIN_FORMATS}
    quantizer = ctx.run.stages.get("quantizer")
    saved_by_plugin = bool(quantizer.save(model, out, ctx)) if quantizer is not None else False
    written: list[str] = []
    peft = _is_peft(model)
    if not saved_by_plugin and (names & {"hf", "adapter"} or (not peft and "merged" in names)):
        ctx.log(f"saving {'adapter' if peft else 'model'} to the output")
        # under FSDP/ZeRO-3 the model holds one shard; training gathered the whole weights for rank 0
        model.save_pretrained(out, state_dict=ctx.run.state_dict)
        written.append("adapter" if peft else "model")
    if peft and ("merged" in names or recipe.output.merge):
        only_merged = names == {"merged"}
        target = out if only_merged else out / "merged"
        ctx.log(f"saving the merged model to {'the output' if only_merged else 'merged/'}")
        adapter = ctx.run.stages.get("adapter")
        merged = adapter.merge(model, ctx) if isinstance(adapter, Adapter) else model.merge_and_unload()
        merged.save_pretrained(target)
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(target)
        written.append("merged")
    if saved_by_plugin:
        written.append(f"model ({getattr(quantizer, 'name', 'quantizer')} format)")
    if ctx.tokenizer is not None:
        ctx.tokenizer.save_pretrained(out)
    if ctx.run.exporters:
        run_exporters(list(ctx.run.exporters), model, ctx.tokenizer, out, ctx)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(out)  # also for a PEFT adapter, whose save_pretrained skips it
    ctx.record("export", written=written, output_mb=round(_folder_bytes(out) / 2**20, 2))
    (out / "tunekit-recipe.yaml").write_text(yaml.safe_dump(ctx.run.recipe_dict, sort_keys=False), encoding="utf-8")


def write_report(ctx: StageContext) -> None:
    """``metrics.json`` and the ``README.md`` card, written after the export stage so its timing is in them."""
    out = Path(ctx.output_dir)  # type: ignore[arg-type]
    (out / "metrics.json").write_text(json.dumps(ctx.metrics, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "README.md").write_text(render_card(ctx, ctx.run.recipe_dict), encoding="utf-8")
