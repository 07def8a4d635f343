"""Candidate recipes generated from the installed plugins, one family ("lever") at a time.

Only torch-free declarations are read: a quantizer's ``bits_per_weight()``, ``kept_16bit()``,
``trainable``, ``requires`` and ``effects``; an adapter's ``trainable_params(arch)``; a context
extender's params. So a third-party quantizer installed next to tunekit is a candidate like
``nf4`` is. Plugin params are set only where the plugin's ``Params`` has the field, and validated by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tunekit.advise.estimate import (  # noqa: F401  (memory_bits, quant_spec_of: the one plugin -> memory translation)
    Estimate,
    QuantSpec,
    Setup,
    default_lora_params,
    estimate,
    memory_bits,
    quant_spec_of,
)
from tunekit.core.kinds import KINDS, Adapter, Plugin, Quantizer
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.hardware import Hardware
    from tunekit.core.arch import ModelArch

STAGES = KINDS


@dataclass
class Candidate:
    """One recipe under consideration, its memory estimate and what the rules know about it."""

    name: str
    lever: str
    method: str  # full | lora | qlora | infer
    stages: dict[str, dict[str, Any]]
    setup: Setup
    quality_cost: float = 0.0
    speedup: float = 1.0
    needs: list[str] = field(default_factory=list)  # unmet requirements -> dropped
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown right after what the candidate is
    calibration: bool = False
    on_load: bool = False  # the base is quantized while loading (bitsandbytes): no calibration pass
    missing_packages: list[str] = field(default_factory=list)
    group_size: int | None = None
    memory: Estimate | None = None
    keep_if_unfit: bool = False
    fallback: bool = False  # kept only when no candidate without the flag fits (a sampler's quantized bases)
    export: str | None = None  # GGUF file type the ``gguf`` exporter writes (the llama.cpp route)
    split_layers: int | None = None  # llama.cpp -ngl when the file is split between GPU and RAM
    tokens_per_s: float | None = None  # decode-speed bound of a split (memory bandwidth / bytes per token)
    offload: dict[str, float] | None = None  # model.offload {gpu_gb, cpu_gb} when transformers splits the layers

    def facts(self) -> dict[str, Any]:
        """What a rule's ``candidate.*`` conditions see."""
        q = self.stages.get("quantizer")
        return {
            "name": self.name, "lever": self.lever, "method": self.method,
            "quantizer": q["method"] if q else None, "bits": round(self.setup.quant.bits, 3),
            "adapter": (self.stages.get("adapter") or {}).get("method"),
            "context": (self.stages.get("context") or {}).get("method"),
            "pruner": (self.stages.get("pruner") or {}).get("method"),
            "sampler": (self.stages.get("sampler") or {}).get("method"),
            "stages": len([k for k in self.stages if k != "sampler"]),
            "quality_cost": self.quality_cost, "speedup": self.speedup, "calibration": self.calibration,
            "on_load": self.on_load, "export": self.export,
            "optimizer": self.setup.optimizer, "strategy": self.setup.strategy,
            "group_size": self.group_size,
            "memory_gb": round(self.memory.total_gb, 2) if self.memory else None,
        }


def plugin_params(cls: type[Plugin], wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The subset of ``wanted`` that ``cls.Params`` declares, if it validates (else None)."""
    known = getattr(cls.Params, "model_fields", {})
    chosen = {k: v for k, v in wanted.items() if k in known}
    try:
        cls.Params.model_validate(chosen)
    except ValidationError:
        return None
    return chosen


def instantiate(cls: type[Plugin], wanted: dict[str, Any]) -> tuple[Plugin, dict[str, Any]]:
    """An instance with the ``wanted`` params it accepts; falls back to its defaults."""
    chosen = plugin_params(cls, wanted)
    if chosen is None:
        chosen = {}
    return cls(cls.Params.model_validate(chosen)), chosen


def _divides_all(arch: ModelArch, group: int) -> bool:
    widths = (arch.hidden, arch.moe_intermediate or arch.intermediate, arch.heads * arch.head_dim)
    return all(w % group == 0 for w in widths)


def quantizer_variants(cls: type[Quantizer], arch: ModelArch, extra: dict[str, Any]) -> list[tuple[Quantizer, dict]]:
    """The default instance, plus 8/4/3-bit variants when the plugin has a ``bits`` param."""
    fields_ = getattr(cls.Params, "model_fields", {})
    base = dict(extra)
    if "group_size" in fields_:
        default_group = getattr(cls.Params(), "group_size", None)
        if isinstance(default_group, int) and default_group > 0 and not _divides_all(arch, default_group):
            for group in (128, 64, 32):
                if _divides_all(arch, group):
                    base.setdefault("group_size", group)
                    break
    wanted = [base]
    if "bits" in fields_:
        wanted += [{**base, "bits": b} for b in (8, 4, 3)]
    seen: set[float] = set()
    out: list[tuple[Quantizer, dict]] = []
    for params in wanted:
        try:
            inst, used = instantiate(cls, params)
            bits = float(inst.bits_per_weight())  # type: ignore[attr-defined]
        except Exception:  # a plugin's declaration that raises is skipped, not fatal
            continue
        if round(bits, 2) in seen:
            continue
        seen.add(round(bits, 2))
        out.append((inst, used))  # type: ignore[arg-type]
    return out


def quality_cost(inst: Plugin, default_bits: float | None = None, bits: float | None = None) -> float:
    """The plugin's declared cost; for a bits variant, scaled by 2^(default - bits) (error ~ step size)."""
    cost = float(inst.effects.quality_cost)
    if default_bits and bits and bits != default_bits:
        cost *= 2.0 ** (default_bits - bits)
    return cost


def requirement_problems(cls: type[Plugin], hardware: Hardware) -> list[str]:
    """Why this machine cannot run ``cls`` (CUDA kernels, bf16); empty when it can."""
    problems = []
    if cls.requires.cuda and not hardware.cuda:
        problems.append(f"{cls.kind} '{cls.name}' needs CUDA kernels; this hardware has no CUDA GPU")
    if cls.requires.bf16 and not hardware.bf16:
        problems.append(f"{cls.kind} '{cls.name}' needs bf16 (compute capability >= 8.0)")
    return problems


def context_factor(arch: ModelArch, target: int) -> float:
    """Scaling factor that reaches ``target`` tokens from the model's trained context (rounded up to 0.5)."""
    return max(1.0, math.ceil(2 * target / arch.max_context) / 2)


def estimate_candidate(arch: ModelArch, cand: Candidate) -> Candidate:
    """A copy of ``cand`` with the memory estimate of its setup."""
    return evolve(cand, memory=estimate(arch, cand.setup))


def adapter_trainable(inst: Adapter, arch: ModelArch) -> int:
    try:
        return int(inst.trainable_params(arch))
    except Exception:  # declaration missing or broken: fall back to LoRA r16 all-linear
        return default_lora_params(arch)
