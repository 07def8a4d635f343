"""The ``gptq`` and ``awq`` plugin classes: params and torch-free declarations.

Both are post-training methods that need calibration text. GPTQModel quantizes a model it loads from
a folder, so ``apply`` writes the incoming model (after any earlier stage) to a temporary folder,
quantizes it there, saves GPTQModel's own output and reloads that through transformers; ``save``
copies GPTQModel's files into the run's output (a transformers ``save_pretrained`` of the reloaded
model would write the kernel's internal v2 layout, not the GPTQ v1 files vLLM and others read).

Bits per weight in GPTQ format: ``bits`` per weight, plus per group and output column one fp16 scale
and one ``bits``-wide packed zero ((16 + bits) / g), plus a 32-bit ``g_idx`` entry per input row
(32 / d_out, small: declared in ``notes``, not in the figure). AWQ's GEMM format stores the same
scales and zeros without ``g_idx`` (docs/reference.md: ~16/g + 4/g).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from tunekit import CalibrationParams, Effects, PluginParams, Quantizer, Requirements
from tunekit.core.quantization import group_overhead_bits, keep_patterns_field, validate_group_size

if TYPE_CHECKING:
    from pathlib import Path

    from tunekit import StageContext

CUDA_KERNELS = ("marlin", "exllama_v2", "triton", "awq_gemm", "awq_marlin")
"""GPTQModel kernels that only run on an NVIDIA GPU; on CPU ``kernel: auto`` picks the torch kernels."""

REQUIRES = Requirements(packages=("gptqmodel", "optimum", "transformers"), extra="gptq", cuda=False,
                        calibration=True)


class _CommonParams(PluginParams):
    group_size: int = Field(128, description="Input columns sharing one scale/zero (-1: per output channel); "
                                             "must divide every quantized layer's input width (SmolLM2-135M: 64)")
    calibration: CalibrationParams = Field(CalibrationParams.model_validate({}),
                                           description="Calibration text: {file, n_samples, seq_len}")
    keep_16bit: tuple[str, ...] = keep_patterns_field()
    kernel: Literal["auto", "torch", "marlin", "exllama_v2", "triton", "awq_gemm", "awq_marlin"] = Field(
        "auto", description="GPTQModel kernel used while quantizing (auto: torch on CPU, fastest on CUDA)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Precision GPTQModel quantizes in (auto: on CPU the loaded model's dtype, where "
                            "GPTQModel would pick bfloat16, ~30x slower without AVX512-BF16/AMX; on CUDA GPTQModel's)")

    _check_group = field_validator("group_size")(validate_group_size)

    @field_validator("keep_16bit")
    @classmethod
    def _only_lm_head(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # GPTQModel skips other modules through its per-module ``dynamic`` config, which vLLM reads but
        # transformers does not: such an output would not reload, so it is refused up front.
        if set(value) - {"lm_head"}:
            raise ValueError("only 'lm_head' can be kept in 16-bit here (transformers cannot reload GPTQModel's "
                             "per-module exclusions); use [] to quantize the lm_head too")
        return value


class GPTQParams(_CommonParams):
    bits: Literal[2, 3, 4, 8] = Field(4, description="Bits per quantized weight")
    sym: bool = Field(True, description="Symmetric quantization (vLLM's fast kernels want True)")
    desc_act: bool = Field(False, description="Act-order: quantize columns by decreasing activation size "
                                              "(better quality, slower kernels)")
    act_group_aware: bool | None = Field(None, description="GPTQModel's group-aware reordering (default: on "
                                                           "unless desc_act); cannot be combined with desc_act")
    damp_percent: float = Field(0.05, gt=0.0, lt=1.0, description="Hessian dampening, fraction of its mean "
                                                                  "diagonal (GPTQModel default 0.05)")
    true_sequential: bool = Field(True, description="Quantize the sub-layers of a block one after another, "
                                                    "feeding each the already-quantized outputs")

    @model_validator(mode="after")
    def _order_flags(self) -> GPTQParams:
        if self.desc_act and self.act_group_aware:
            raise ValueError("act_group_aware cannot be combined with desc_act (pick one ordering)")
        return self


class AWQParams(_CommonParams):
    bits: Literal[2, 3, 4, 8] = Field(4, description="Bits per quantized weight (GPU kernels and vLLM read 4-bit "
                                                     "AWQ only; other widths run on GPTQModel's torch kernel)")
    zero_point: bool = Field(True, description="Asymmetric quantization with a per-group zero (AWQ's default)")
    dtype: Literal["auto", "bfloat16", "float16"] = Field(  # type: ignore[assignment]
        "auto", description="Precision GPTQModel quantizes in (auto: GPTQModel's choice, bfloat16 on CPU; its AWQ "
                            "torch kernel packs only 16-bit weights, which CPUs without AVX512-BF16/AMX run slowly)")


CommonParams = TypeVar("CommonParams", GPTQParams, AWQParams)


class _GPTQModelQuantizer(Quantizer[CommonParams]):
    """Shared flow: quantize through GPTQModel in a temporary folder, reload, and save its files."""

    requires = REQUIRES
    method: ClassVar[str] = "gptq"

    quantized_dir: Path | None = None
    """GPTQModel's saved folder once ``apply`` ran (set per instance); ``save`` copies it into the output."""

    def bits_per_weight(self) -> float:
        return self.params.bits + group_overhead_bits(self.params.bits, self.params.group_size, zero=True)

    def kept_16bit(self) -> tuple[str, ...]:
        return ("embed_tokens", *self.params.keep_16bit)

    def quantize_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, model: Any, ctx: StageContext) -> Any:
        self.check_requirements()
        from tunekit_gptq.backend import quantize_through_gptqmodel

        reloaded, folder, stats = quantize_through_gptqmodel(model, ctx, self)
        self.quantized_dir = folder
        ctx.record("quantize", method=self.name, **stats)
        return reloaded

    def save(self, model: Any, out_dir: Path, ctx: StageContext) -> bool:
        """Copy GPTQModel's saved files (GPTQ v1 / AWQ GEMM layout) into ``out_dir``."""
        from tunekit_gptq.backend import copy_quantized

        if self.quantized_dir is None:
            return False
        copy_quantized(self.quantized_dir, out_dir)
        return True


class GPTQQuantizer(_GPTQModelQuantizer[GPTQParams]):
    name = "gptq"
    summary = "GPTQ (Hessian-based error feedback) through GPTQModel; GPTQ-format output for transformers/vLLM"
    method = "gptq"
    # AWQ paper, Llama-2-7B WikiText-2: FP16 5.47, GPTQ INT4 g128 5.69 (+4.0%); INT3 g128 6.43 (+17.6%).
    effects = Effects(quality_cost=0.040, speedup=1.5, notes=(
        "better than RTN at the same bits (AWQ paper: +4.0% vs +4.8% ppl at 4-bit g128; +17.6% vs +21.8% at 3-bit)",
        "g_idx adds 32/d_out bits per weight beyond the declared figure",
    ))
    trainable: ClassVar[bool] = True
    """PEFT wraps GPTQModel's layers in its GPTQ LoRA layer; measured here, LoRA trains on the CPU torch
    kernel (loss falls; tests/plugins/test_gptq.py). The base stays frozen and quantized."""

    def quantize_config(self) -> dict[str, Any]:
        p = self.params
        config: dict[str, Any] = {"bits": p.bits, "group_size": p.group_size, "sym": p.sym, "desc_act": p.desc_act,
                                  "damp_percent": p.damp_percent, "true_sequential": p.true_sequential}
        if p.act_group_aware is not None:
            config["act_group_aware"] = p.act_group_aware
        return config


class AWQQuantizer(_GPTQModelQuantizer[AWQParams]):
    name = "awq"
    summary = "AWQ (activation-aware scaling) through GPTQModel; AWQ GEMM output for transformers/vLLM"
    method = "awq"
    # AWQ paper, Llama-2-7B WikiText-2: FP16 5.47, AWQ INT4 g128 5.60 (+2.4%); INT3 g128 6.24 (+14.1%).
    effects = Effects(quality_cost=0.024, speedup=1.5, notes=(
        "best of the 4-bit PTQ methods in the AWQ paper (+2.4% ppl at 4-bit g128)",
        "on CPU GPTQModel runs AWQ with its torch kernel (BACKEND.AWQ_TORCH)",
    ))
    trainable: ClassVar[bool] = True
    """PEFT's ``AwqLoraLinear`` trains LoRA on GPTQModel's AWQ torch kernel (measured here, CPU)."""

    def quantize_config(self) -> dict[str, Any]:
        p = self.params
        return {"bits": p.bits, "group_size": p.group_size, "sym": not p.zero_point, "method": "awq",
                "format": "gemm"}
