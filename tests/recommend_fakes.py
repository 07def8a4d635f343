"""In-process plugin classes for the recommender's tests, so they do not depend on the built-ins.

Their declarations mirror what the real plugins declare (names, bits per weight, trainable, needs),
plus one third-party quantizer (``hqq``) that the recommender must consider like a built-in one.
Register with ``load_registry(entry_points=False, extra_modules=[recommend_fakes])``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tunekit import hookimpl
from tunekit.core.arch import ModelArch
from tunekit.core.kinds import Adapter, ContextExtender, Effects, PluginParams, Pruner, Quantizer, Requirements, Sampler


class Nf4(Quantizer):
    name = "nf4"
    on_load = True
    trainable = True
    effects = Effects(quality_cost=0.03, speedup=0.9)

    class Params(PluginParams):
        quant_storage: str | None = None

    def bits_per_weight(self) -> float:
        return 4.127


class Int8(Quantizer):
    name = "int8"
    on_load = True
    trainable = True
    effects = Effects(quality_cost=0.002, speedup=0.7)

    def bits_per_weight(self) -> float:
        return 8.0


class Gptq(Quantizer):
    name = "gptq"
    requires = Requirements(calibration=True)
    effects = Effects(quality_cost=0.04, speedup=1.8)

    class Params(PluginParams):
        bits: int = Field(4, ge=2, le=8)
        group_size: int = Field(128, ge=16)

    def bits_per_weight(self) -> float:
        p: Any = self.params
        return p.bits + 20 / p.group_size


class Rtn(Gptq):
    name = "rtn"
    requires = Requirements()
    effects = Effects(quality_cost=0.05, speedup=1.5)


class CudaOnly(Quantizer):
    name = "marlin-fp8"
    requires = Requirements(cuda=True)
    effects = Effects(quality_cost=0.001, speedup=2.0)

    def bits_per_weight(self) -> float:
        return 8.0


class Hqq(Quantizer):
    """A third-party 4-bit quantizer, better than the others: the recommender must rank it without knowing it."""

    name = "hqq"
    effects = Effects(quality_cost=0.01, speedup=1.6)

    def bits_per_weight(self) -> float:
        return 4.25


class LoraParams(PluginParams):
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: str | list[str] = "all-linear"


class Lora(Adapter):
    name = "lora"
    Params = LoraParams

    def trainable_params(self, arch: ModelArch) -> int:
        p: Any = self.params
        shapes = arch.linear_shapes()
        return arch.layers * sum(p.r * (shapes[m][0] + shapes[m][1]) for m in arch.resolve_targets(p.targets))


class Dora(Lora):
    name = "dora"


class Vera(Adapter):
    name = "vera"

    class Params(PluginParams):
        r: int = Field(256, ge=1)

    def trainable_params(self, arch: ModelArch) -> int:
        shapes = arch.linear_shapes()
        return arch.layers * sum(d_out + self.params.r for _, d_out in shapes.values())  # type: ignore[attr-defined]


class Yarn(ContextExtender):
    name = "yarn"

    class Params(PluginParams):
        factor: float = Field(2.0, ge=1)

    def factor_for(self, arch: ModelArch) -> float:
        return float(self.params.factor)  # type: ignore[attr-defined]


class Linear(Yarn):
    name = "linear"


class Magnitude(Pruner):
    name = "magnitude"
    effects = Effects(quality_cost=0.5)

    class Params(PluginParams):
        sparsity: float = Field(0.5, ge=0, lt=1)

    def sparsity(self) -> float:
        return float(self.params.sparsity)  # type: ignore[attr-defined]


class Sampling(Sampler):
    name = "sampling"

    class Params(PluginParams):
        temperature: float = Field(0.7, ge=0, le=2)
        top_p: float = Field(1.0, gt=0, le=1)
        top_k: int = Field(0, ge=0)
        min_p: float = Field(0.0, ge=0, le=1)
        repetition_penalty: float = Field(1.0, ge=1, le=2)
        max_new_tokens: int = Field(256, ge=1)
        preset: str | None = None

    def generation_config(self) -> dict[str, Any]:
        return self.params.model_dump(exclude={"preset"})


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [Nf4, Int8, Gptq, Rtn, CudaOnly, Hqq]


@hookimpl
def tunekit_adapters() -> list[type[Adapter]]:
    return [Lora, Dora, Vera]


@hookimpl
def tunekit_context_extenders() -> list[type[ContextExtender]]:
    return [Yarn, Linear]


@hookimpl
def tunekit_pruners() -> list[type[Pruner]]:
    return [Magnitude]


@hookimpl
def tunekit_samplers() -> list[type[Sampler]]:
    return [Sampling]


@hookimpl
def tunekit_models() -> list[dict[str, Any]]:
    return [{"id": "fake-3b", "hf_id": "example/Fake-3B", "layers": 26, "hidden": 3072, "intermediate": 8192,
             "heads": 24, "kv_heads": 8, "vocab": 32000, "ctx": 8192, "params": 3.0}]


@hookimpl
def tunekit_rules() -> list[dict[str, Any]]:
    return [{"id": "plugin-prefers-hqq", "when": {"symptom": "doesnt-fit"},
             "prefer": [{"when": {"fact": "candidate.quantizer", "value": "hqq"}, "points": 0.1,
                         "reason": "plugin rule fired"}]}]
