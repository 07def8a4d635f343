"""The ``dynamic-int8`` plugin class: params and torch-free declarations.

What it is: ``torch.ao.quantization.quantize_dynamic`` on the linear layers. Weights are stored as
int8 with a float scale per output channel (or per tensor); activations are quantized to int8 on the
fly, per batch, inside each matmul, so no calibration data is needed. The int8 kernels (fbgemm/x86,
qnnpack) run on the CPU only: this is a lever for CPU serving of an fp32 model (smaller weights,
faster matmuls), not for GPUs, and not for training.

What it writes: a dynamically quantized model is not something ``from_pretrained`` can load, so the
output folder holds ``config.json``, the quantized state dict (``dynamic-int8.pt``) and the recipe;
:func:`tunekit_dynamic.dynamic.load_saved` rebuilds the architecture, re-applies the same
quantization and loads the state dict (``tunekit generate`` / ``tunekit bench`` do that for you).
Other export formats (``merged``, ``gguf``) are refused when the recipe loads.

``torch.ao.quantization`` is deprecated upstream in favour of torchao's ``quantize_``; it still
ships (torch 2.13) and is the one dynamic-int8 path with CPU kernels in plain torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from tunekit.core.kinds import Effects, PluginParams, Quantizer, Requirements
from tunekit.core.quantization import keep_patterns_field

if TYPE_CHECKING:
    from tunekit.core.context import StageContext


class DynamicInt8Params(PluginParams):
    granularity: Literal["tensor", "channel"] = Field(
        "channel", description="One int8 scale per output channel (better quality) or per tensor")
    keep_16bit: tuple[str, ...] = keep_patterns_field()


class DynamicInt8Quantizer(Quantizer):
    """int8 weights, int8 activations quantized per batch; CPU kernels, no calibration."""

    name = "dynamic-int8"
    summary = "PyTorch dynamic int8 quantization of the linear layers (CPU inference, no calibration)"
    Params = DynamicInt8Params
    requires = Requirements(packages=("torch",), extra="torch", cuda=False, calibration=False)
    # Measured on SmolLM2-135M (bench/results/dynamic-int8-cpu.md, 2 shared cores): Persuasion perplexity
    # 45.2 -> 109.2 (+142%: activations are quantized per tensor, and a small LLM's outlier features lose
    # most of their grid), greedy decode 0.4 -> 1.2 tok/s (x3.1, noisy on a loaded machine).
    effects = Effects(quality_cost=1.42, speedup=3.0, notes=(
        "CPU only: int8 matmuls through fbgemm/x86 kernels; the model runs in fp32 around them",
        "per-tensor int8 activations cost quality on LLMs: SmolLM2-135M perplexity +142% (bench/results)",
        "output is the int8 state dict + recipe (tunekit generate/bench reload it), not a from_pretrained folder",
    ))
    output_formats: ClassVar[frozenset[str] | None] = frozenset({"hf"})
    params: DynamicInt8Params

    def bits_per_weight(self) -> float:
        # The per-channel scale (float64) and zero point (int64) add 128/d_in bits: < 0.25 bit at d_in >= 576.
        return 8.0

    def kept_16bit(self) -> tuple[str, ...]:
        return ("embed_tokens", *self.params.keep_16bit)

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_dynamic.dynamic import quantize_model

        stats = quantize_model(model, self.params, log=ctx.log)
        ctx.record("quantize", method=self.name, **stats)
        return model

    def save(self, model: Any, out_dir: Path, ctx: StageContext) -> bool:
        from tunekit_dynamic.dynamic import save_quantized

        ctx.log("saving the int8 state dict (dynamic-int8.pt) and config.json to the output")
        save_quantized(model, out_dir)
        return True

    @classmethod
    def load_saved(cls, folder: Path, params: PluginParams) -> Any:
        from tunekit_dynamic.dynamic import load_saved

        return load_saved(folder, params)  # type: ignore[arg-type]
