"""Context extension by RoPE scaling: ``linear``, ``dynamic``, ``yarn``, ``llama3``, ``longrope``.

Each plugin writes transformers 5's ``config.rope_parameters`` (``rope_theta`` kept inside it: the
legacy ``rope_scaling`` path leaves it None and breaks the model) and rebuilds the loaded model's
rotary embeddings from it, so the change is live for evaluation and saved with the config. The
inverse-frequency formulas are transformers' (``modeling_rope_utils``), cited in docs/reference.md.
Declarations here are torch-free; the work is in :mod:`tunekit_rope.rope`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from tunekit import ContextExtender, Effects, PluginParams, UsageError

if TYPE_CHECKING:
    from tunekit import ModelArch, StageContext

DEFAULT_FACTOR = 2.0


class RopeParams(PluginParams):
    factor: float | None = Field(None, ge=1.0, le=64.0,
                                 description="Context multiplier (default 2, or target_length / original context)")
    target_length: int | None = Field(None, ge=16, le=16_777_216,
                                      description="Context length to reach; sets factor when factor is not given")
    sliding_window: int | None = Field(None, ge=16, description="Set the sliding-window size (models that have one)")


RopeP = TypeVar("RopeP", bound=RopeParams)


class RopeExtender(ContextExtender[RopeP]):
    """Shared logic: choose the factor, write ``rope_parameters``, rebuild rotary embeddings."""

    rope_type: ClassVar[str] = ""
    Params: ClassVar[type[PluginParams]] = RopeParams
    changes_max_positions: ClassVar[bool] = True
    """False for dynamic NTK: its formula divides by the *original* length, so it must stay in the config."""

    def factor_for(self, arch: ModelArch) -> float:
        p = self.params
        if p.target_length is not None:
            needed = p.target_length / arch.max_context
            if p.factor is not None and p.factor * arch.max_context < p.target_length:
                raise UsageError(f"context.factor {p.factor} reaches {int(p.factor * arch.max_context)} tokens, "
                                 f"less than target_length {p.target_length} (original context {arch.max_context})")
            if p.factor is not None:
                return float(p.factor)
            if needed <= 1.0:
                raise UsageError(f"context.target_length {p.target_length} is not longer than the model's "
                                 f"{arch.max_context} tokens: nothing to extend")
            return float(needed)
        return float(p.factor if p.factor is not None else DEFAULT_FACTOR)

    def rope_parameters(self, factor: float, original: int, theta: float, head_dim: int) -> dict[str, Any]:
        """The complete ``rope_parameters`` dict for this method (only keys transformers accepts)."""
        return {"rope_type": self.rope_type, "rope_theta": theta, "factor": factor}

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_rope.rope import extend

        return extend(self, model, ctx)


class LinearRope(RopeExtender[RopeParams]):
    name = "linear"
    rope_type = "linear"
    summary = "Position interpolation: every RoPE frequency divided by the factor (needs a short fine-tune)"
    effects = Effects(quality_cost=0.05, notes=("Position Interpolation (Chen et al. 2023): degrades short "
                                                "inputs until fine-tuned for ~1000 steps",))


class DynamicRope(RopeExtender[RopeParams]):
    name = "dynamic"
    rope_type = "dynamic"
    changes_max_positions = False
    summary = "Dynamic NTK: RoPE base grows with the input length beyond the original context (no fine-tune)"
    effects = Effects(quality_cost=0.0, notes=("inputs within the original context are unchanged",))


class YarnParams(RopeParams):
    beta_fast: float = Field(32.0, gt=0, description="YaRN: rotations above which dimensions are extrapolated")
    beta_slow: float = Field(1.0, gt=0, description="YaRN: rotations below which dimensions are interpolated")
    attention_factor: float | None = Field(None, gt=0, description="cos/sin scale (default 0.1*ln(factor)+1)")


class YarnRope(RopeExtender[YarnParams]):
    name = "yarn"
    rope_type = "yarn"
    summary = "YaRN: NTK-by-parts interpolation plus attention temperature; best with ~400 fine-tune steps"
    effects = Effects(quality_cost=0.01, notes=("YaRN (Peng et al. 2023); static YaRN can hurt short inputs",))

    def rope_parameters(self, factor: float, original: int, theta: float, head_dim: int) -> dict[str, Any]:
        p = self.params
        values = {"rope_type": "yarn", "rope_theta": theta, "factor": factor,
                  "original_max_position_embeddings": original, "beta_fast": p.beta_fast, "beta_slow": p.beta_slow}
        if p.attention_factor is not None:
            values["attention_factor"] = p.attention_factor
        return values


class Llama3Params(RopeParams):
    low_freq_factor: float = Field(1.0, gt=0, description="Wavelengths above original/low_freq_factor are scaled")
    high_freq_factor: float = Field(4.0, gt=0, description="Wavelengths below original/high_freq_factor are kept")


class Llama3Rope(RopeExtender[Llama3Params]):
    name = "llama3"
    rope_type = "llama3"
    summary = "Llama 3.1 frequency-band scaling: low frequencies divided by factor, high ones kept, smooth between"
    effects = Effects(quality_cost=0.01, notes=("Llama 3.1 used factor 8, low 1, high 4 from 8192 tokens",))

    def rope_parameters(self, factor: float, original: int, theta: float, head_dim: int) -> dict[str, Any]:
        p = self.params
        if p.high_freq_factor <= p.low_freq_factor:
            raise UsageError("context.high_freq_factor must be larger than low_freq_factor")
        return {"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": p.low_freq_factor,
                "high_freq_factor": p.high_freq_factor, "original_max_position_embeddings": original}


class LongRopeParams(RopeParams):
    short_factor: list[float] | None = Field(None, description="Per-frequency rescale for inputs within the "
                                             "original context (default all 1.0: unchanged)")
    long_factor: list[float] | None = Field(None, description="Per-frequency rescale beyond it (default: YaRN's "
                                            "ramp, 1 for fast dimensions up to factor for slow ones)")


class LongRope(RopeExtender[LongRopeParams]):
    name = "longrope"
    rope_type = "longrope"
    summary = "LongRoPE (Phi-3): separate per-frequency factors for short and long inputs"
    effects = Effects(quality_cost=0.02, notes=("LongRoPE (Ding et al. 2024) searches its factors; the default "
                                                "ramp is a starting point, not the searched set",))

    def rope_parameters(self, factor: float, original: int, theta: float, head_dim: int) -> dict[str, Any]:
        from tunekit_rope.formulas import yarn_ramp_factors

        p = self.params
        half = head_dim // 2
        short = list(p.short_factor) if p.short_factor is not None else [1.0] * half
        long = list(p.long_factor) if p.long_factor is not None else yarn_ramp_factors(factor, original, theta,
                                                                                        head_dim)
        for label, values in (("short_factor", short), ("long_factor", long)):
            if len(values) != half:
                raise UsageError(f"context.{label} needs head_dim/2 = {half} values, got {len(values)}")
        return {"rope_type": "longrope", "rope_theta": theta, "factor": factor, "short_factor": short,
                "long_factor": long, "original_max_position_embeddings": original}


PLUGINS = [LinearRope, DynamicRope, YarnRope, Llama3Rope, LongRope]

