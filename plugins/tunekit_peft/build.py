"""Attach a PEFT adapter to a loaded model (imports torch and peft; loaded only inside ``apply``).

QLoRA is not a separate plugin: any adapter here, put on a k-bit base (bitsandbytes NF4/int8, GPTQ),
first runs ``prepare_model_for_kbit_training`` so the frozen quantized base trains an fp32 adapter.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit import ModelArch, PluginError
from tunekit.core.backends import guard_peft_gptqmodel

if TYPE_CHECKING:
    from tunekit import StageContext
    from tunekit_peft.plugin import PeftAdapter


def is_kbit(model: Any) -> bool:
    """Whether the base holds quantized weights that PEFT trains through (bnb 4/8-bit, GPTQ)."""
    return bool(
        getattr(model, "is_loaded_in_4bit", False)
        or getattr(model, "is_loaded_in_8bit", False)
        or getattr(model, "quantization_method", None) in {"gptq", "bitsandbytes"}
    )


def model_arch(model: Any, ctx: StageContext) -> ModelArch:
    if ctx.arch is not None:
        return ctx.arch
    return ModelArch.from_hf_config(model.config.to_dict(), name=getattr(model.config, "_name_or_path", "model"))


def count_params(model: Any) -> tuple[int, int]:
    """(trainable, total) as PEFT counts them (4-bit weights counted unpacked)."""
    trainable, total = model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def attach(plugin: PeftAdapter, model: Any, ctx: StageContext) -> Any:
    """Wrap ``model`` in a PeftModel for ``plugin``; record declared and actual trainable counts."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    guard_peft_gptqmodel()
    arch = model_arch(model, ctx)
    quantized = is_kbit(model)
    if quantized:  # the bnb quantizer's own apply already made its 4-bit layers safe to save on CPU
        checkpointing = bool(ctx.recipe.train and ctx.recipe.train.gradient_checkpointing)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        )
    try:
        peft_model = get_peft_model(model, plugin.peft_config(arch))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise PluginError(f"adapter '{plugin.name}' cannot attach to this model: {exc}") from exc
    if plugin.freeze_a:
        for name, param in peft_model.named_parameters():
            if "lora_A" in name:
                param.requires_grad_(False)
    trainable, total = count_params(peft_model)
    declared = plugin.trainable_params(arch)
    ctx.record("adapter", method=plugin.name, trainable_params=trainable, declared_trainable_params=declared,
               total_params=total, qlora=quantized, targets=plugin.targets(arch))
    if trainable != declared:
        ctx.log(f"note: {plugin.name} trains {trainable:,} parameters; its declaration says {declared:,}")
    ctx.log(f"{plugin.name}: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.3f}%)"
            + (" on a quantized base (QLoRA)" if quantized else ""))
    return peft_model


def merge_for_export(model: Any, ctx: StageContext) -> Any:
    """The merged model a run exports. On a quantized base (QLoRA) PEFT would fold the update into the
    4-bit weights and re-quantize it, rounding most of the fine-tune away; instead the 16-bit base is
    reloaded and the run's context-extension and pruning plugins are applied to it again (both are
    deterministic and ran before quantization), so the adapter is merged into the very weights it was
    trained on, minus the quantization error."""
    if not is_kbit(model.get_base_model()):
        return model.merge_and_unload()
    if ctx.model_path is None or ctx.run.gguf_file:
        raise PluginError("merging a QLoRA adapter needs the unquantized base model's folder (not a GGUF file)")

    def rebuild(base: Any) -> Any:
        replay = dataclasses.replace(ctx, metrics={}, log=lambda _: None)  # no second set of stage records
        for slot in ("context", "pruner"):
            plugin = ctx.run.stages.get(slot)
            if plugin is not None:
                ctx.log(f"merge: re-applying {slot} '{plugin.name}' to the 16-bit base")
                base = plugin.apply(base, replay) or base
        return base

    ctx.log("merge: folding the adapter into the 16-bit base (not the quantized one)")
    return merged(model, ctx.model_path, prepare=rebuild, trust_remote_code=ctx.recipe.model.trust_remote_code)


def merged(model: Any, base_path: str | Path | None = None, prepare: Callable[[Any], Any] | None = None,
           *, trust_remote_code: bool = False) -> Any:
    """The adapter folded into the base weights, as a plain transformers model.

    A 16/32-bit base merges in place. A quantized base (QLoRA) would re-quantize the update, so the
    unquantized base is reloaded from ``base_path`` and the trained adapter merged into it there.
    """
    if not is_kbit(model.get_base_model()):
        return model.merge_and_unload()
    if base_path is None:
        raise PluginError("merging a QLoRA adapter needs the unquantized base model's folder")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    guard_peft_gptqmodel()
    with tempfile.TemporaryDirectory(prefix="tunekit-adapter-") as tmp:
        model.save_pretrained(tmp)
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto", trust_remote_code=trust_remote_code)
        if prepare is not None:
            base = prepare(base)
        return PeftModel.from_pretrained(base, tmp).merge_and_unload()
