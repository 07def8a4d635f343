"""The ``nf4``, ``fp4`` and ``int8`` plugin classes: params and torch-free declarations.

Bits per weight (QLoRA paper, §3 "Double Quantization"): 4-bit weights carry one fp32 absmax per block
of 64 (32/64 = 0.5 bit); double quantization stores those constants in 8 bits with one fp32 per 256
of them (8/64 + 32/(64·256) = 0.127 bit). LLM.int8() keeps one fp32 scale per output row (32/d_in bit,
under 0.06 for d_in >= 576), declared as 8.0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field

from tunekit import Effects, PluginParams, Quantizer, Requirements, UsageError
from tunekit.core.quantization import keep_patterns_field

if TYPE_CHECKING:
    from tunekit import StageContext

NF4_BLOCK = 64
"""Weights per fp32 absmax constant (QLoRA §3)."""
DQ_BLOCK = 256
"""First-level constants per fp32 second-level constant under double quantization (QLoRA §3)."""
CPU_4BIT_MULTIPLE = 32
"""bitsandbytes 0.50's CPU 4-bit path needs layer widths that are multiples of 32 (measured here)."""

ComputeDtype = Literal["auto", "float32", "bfloat16", "float16"]
REQUIRES = Requirements(packages=("bitsandbytes", "transformers"), extra="bnb", cuda=False, calibration=False)


def resolve_compute_dtype(name: str, device: str) -> str:
    """'auto' computes in fp32 on CPU (exact, and bf16 matmuls are slow without AMX) and bf16 on GPUs."""
    if name != "auto":
        return name
    return "float32" if device == "cpu" else "bfloat16"


class FourBitParams(PluginParams):
    double_quant: bool = Field(True, description="Quantize the block constants too (saves ~0.37 bit/weight)")
    compute_dtype: ComputeDtype = Field("auto", description="Matmul dtype (auto: float32 on CPU, bfloat16 on GPU)")
    quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="dtype the packed 4-bit weights are stored in (FSDP needs the model's dtype)")
    keep_16bit: tuple[str, ...] = keep_patterns_field()


class Int8Params(PluginParams):
    llm_int8_threshold: float = Field(6.0, ge=0.0, le=1000.0, description="Activation magnitude above which a "
                                                                           "feature is computed in 16-bit (outliers)")
    keep_16bit: tuple[str, ...] = keep_patterns_field()


BnbParams = TypeVar("BnbParams", FourBitParams, Int8Params)


class _BnbQuantizer(Quantizer[BnbParams]):
    """Shared behaviour: quantize on load through transformers' ``BitsAndBytesConfig``."""

    on_load: ClassVar[bool] = True
    trainable: ClassVar[bool] = True
    """QLoRA: PEFT trains LoRA adapters on bitsandbytes layers (``prepare_model_for_kbit_training``)."""
    requires = REQUIRES

    def kept_16bit(self) -> tuple[str, ...]:
        return ("embed_tokens", *self.params.keep_16bit)

    def config_kwargs(self, device: str) -> dict[str, Any]:
        raise NotImplementedError

    def load_kwargs(self, ctx: StageContext) -> dict[str, Any]:
        self.check_requirements()
        self.check_widths(ctx)
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(**self.config_kwargs(ctx.device))}

    def check_widths(self, ctx: StageContext) -> None:
        """Refuse, before loading, layer widths bitsandbytes' CPU 4-bit path cannot take."""

    def prepare_loaded(self, model: Any, ctx: StageContext) -> Any:
        """CPU-kernel switches on the model ``from_pretrained(**load_kwargs)`` returned, before any forward."""
        from tunekit_bnb.fixups import prepare_loaded

        ctx.record("quantize", method=self.name, **prepare_loaded(model))
        return model

    def apply(self, model: Any, ctx: StageContext) -> Any:
        """The quantization happened at load; this re-checks the fix-ups (idempotent) for library callers
        that load the model themselves."""
        return self.prepare_loaded(model, ctx)


class NF4Quantizer(_BnbQuantizer[FourBitParams]):
    name = "nf4"
    summary = "bitsandbytes 4-bit NormalFloat (QLoRA's base), quantized on load"
    quant_type: ClassVar[str] = "nf4"
    # llama.cpp, Llama-3-8B: q4_0 (4-bit, one absmax per block of 32, like NF4's block of 64) +0.469 on
    # 6.2332 = +7.5%; QLoRA (Pile CC) puts NF4+DQ ahead of FP4 and Int4 (27.41 vs 31.07 vs 34.34).
    effects = Effects(quality_cost=0.075, speedup=0.8, notes=(
        "QLoRA base: NF4 + double quant beats FP4 and Int4 (QLoRA paper)",
        "dequantizes on every matmul: slower than 16-bit on CPU, memory ~4.1 bits/weight",
    ))

    def bits_per_weight(self) -> float:
        if self.params.double_quant:
            return 4 + 8 / NF4_BLOCK + 32 / (NF4_BLOCK * DQ_BLOCK)
        return 4 + 32 / NF4_BLOCK

    def config_kwargs(self, device: str) -> dict[str, Any]:
        p = self.params
        return {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": self.quant_type,
            "bnb_4bit_use_double_quant": p.double_quant,
            "bnb_4bit_compute_dtype": resolve_compute_dtype(p.compute_dtype, device),
            "bnb_4bit_quant_storage": p.quant_storage,
            "llm_int8_skip_modules": list(p.keep_16bit),
        }

    def check_widths(self, ctx: StageContext) -> None:
        if ctx.device != "cpu" or ctx.arch is None:
            return
        keep = set(self.params.keep_16bit)
        bad = {name: shape for name, shape in ctx.arch.linear_shapes().items()
               if name not in keep and any(w % CPU_4BIT_MULTIPLE for w in shape)}
        if bad:
            raise UsageError(f"{self.name}: bitsandbytes' CPU 4-bit path needs layer widths that are multiples of "
                             f"{CPU_4BIT_MULTIPLE}; {sorted(bad)} have {sorted(set(bad.values()))}. Keep them "
                             "16-bit (keep_16bit) or run on a CUDA GPU")


class FP4Quantizer(NF4Quantizer):
    name = "fp4"
    summary = "bitsandbytes 4-bit float (FP4), quantized on load"
    quant_type = "fp4"
    # [D] NF4's cost plus QLoRA's FP4/NF4 perplexity ratio (31.07 / 27.41 = +13.4%, Pile CC).
    effects = Effects(quality_cost=0.209, speedup=0.8, notes=(
        "worse than NF4 at the same memory (QLoRA paper: Pile CC ppl 31.07 vs 27.41); prefer nf4",
    ))


class Int8Quantizer(_BnbQuantizer[Int8Params]):
    name = "int8"
    summary = "bitsandbytes LLM.int8() (8-bit weights, 16-bit outlier features), quantized on load"
    # llama.cpp, Llama-3-8B: q8_0 +0.0027 on 6.2332 (+0.04%); LLM.int8() paper: no degradation up to 175B.
    effects = Effects(quality_cost=0.0004, speedup=0.5, notes=(
        "near-lossless; halves 16-bit memory, but the outlier decomposition makes matmuls slower",
    ))

    def bits_per_weight(self) -> float:
        return 8.0

    def config_kwargs(self, device: str) -> dict[str, Any]:
        return {"load_in_8bit": True, "llm_int8_threshold": self.params.llm_int8_threshold,
                "llm_int8_skip_modules": list(self.params.keep_16bit)}
