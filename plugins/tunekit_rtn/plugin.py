"""The ``rtn`` plugin class: params and torch-free declarations.

Output format: *fake-quantized* weights. Every quantized linear weight is rounded to ``bits`` levels
and immediately dequantized back into the model's own dtype, so the saved folder is a plain
transformers model (no quantization_config, loads anywhere, every tool reads it) whose numbers are
exactly what a packed RTN kernel would compute. The file is therefore as large as the original: RTN
here measures the *quality* cost of rounding, it does not save memory. ``bits_per_weight`` declares
what the same weights take packed (the figure to compare with GPTQ/AWQ), ``storage_bits_per_weight``
what this plugin's output actually stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tunekit import Effects, PluginParams, Quantizer, Requirements
from tunekit.core.quantization import group_overhead_bits, keep_patterns_field, validate_group_size

if TYPE_CHECKING:
    from tunekit import StageContext


class RTNParams(PluginParams):
    bits: int = Field(4, ge=2, le=8, description="Bits per quantized weight")
    sym: bool = Field(True, description="Symmetric (zero fixed at the midpoint) or asymmetric (per-group zero)")
    granularity: Literal["tensor", "channel", "group"] = Field(
        "group", description="One scale per tensor, per output channel, or per group of input columns")
    group_size: int = Field(128, description="Input columns sharing one scale (granularity 'group'); must divide "
                                             "every quantized layer's input width (SmolLM2-135M: 64, not 128)")
    keep_16bit: tuple[str, ...] = keep_patterns_field()

    _check_group = field_validator("group_size")(validate_group_size)

    @model_validator(mode="after")
    def _group_needs_size(self) -> RTNParams:
        if self.granularity == "group" and self.group_size == -1:
            raise ValueError("granularity 'group' needs a positive group_size (or use granularity 'channel')")
        return self


class RTNQuantizer(Quantizer[RTNParams]):
    """Round-to-nearest in plain torch; no calibration data, runs anywhere."""

    name = "rtn"
    summary = "Round-to-nearest weight quantization (baseline; fake-quant output in the model's dtype)"
    requires = Requirements(packages=("torch",), extra="torch", cuda=False, calibration=False)
    # AWQ paper (Llama-2-7B, WikiText-2, INT4 g128): RTN 5.73 vs FP16 5.47 -> +4.8%.
    effects = Effects(quality_cost=0.048, speedup=1.0, notes=(
        "baseline: worse than GPTQ/AWQ at the same bits (AWQ paper: +4.8% ppl at 4-bit g128, +22% at 3-bit)",
        "output is dequantized (fake-quant) weights in the model's dtype: no memory saving on disk",
    ))
    trainable: ClassVar[bool] = True
    """The output is an ordinary dense model, so an adapter trains on it like on any other."""


    def bits_per_weight(self) -> float:
        p = self.params
        if p.granularity != "group":
            return float(p.bits)
        return p.bits + group_overhead_bits(p.bits, p.group_size, zero=not p.sym)

    def storage_bits_per_weight(self, dtype_bits: int = 16) -> float:
        return float(dtype_bits)

    def kept_16bit(self) -> tuple[str, ...]:
        return ("embed_tokens", *self.params.keep_16bit)

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_rtn.rounding import quantize_model

        stats = quantize_model(model, self.params)
        ctx.record("quantize", method=self.name, **stats)
        return model
