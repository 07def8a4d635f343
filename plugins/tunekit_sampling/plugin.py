"""The ``sampling`` sampler: decoding controls written as the output's ``generation_config.json``.

Presets come from docs/reference.md ("Decoding"): deterministic (greedy; Q&A, code), chat (T 0.7, top-p
0.9), creative (1.0 / 0.95), brainstorm (1.2 / 0.98), code (T 0.2, top-p 0.95: near-deterministic with
a little variety). Explicit fields override the preset. ``assistant_model`` names a smaller model
folder for speculative (assisted) decoding — outputs stay those of the main model, 2-3x faster where
the draft agrees (Leviathan et al. 2023); ``tunekit generate`` loads it, the output records its path.
``kv_cache`` picks transformers' cache implementation (``tunekit.core.kv_cache``): a quantized cache
(fp8, or hqq/quanto at 2-4 bits) holds the same context in a half or a quarter of the memory, which
``tunekit estimate`` counts and ``generate``/``bench`` run; ``offloaded`` needs a CUDA GPU.
Torch-free: the base class's ``apply`` sets ``model.generation_config``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tunekit import PluginParams, Sampler
from tunekit.core.kv_cache import QUANT_BACKENDS, default_backend, generation_keys

PRESETS: dict[str, dict[str, Any]] = {
    "deterministic": {"do_sample": False},
    "chat": {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.05},
    "creative": {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "repetition_penalty": 1.05},
    "brainstorm": {"do_sample": True, "temperature": 1.2, "top_p": 0.98, "repetition_penalty": 1.1},
    "code": {"do_sample": True, "temperature": 0.2, "top_p": 0.95},
}
"""Preset -> GenerationConfig values (docs/reference.md "Decoding"; repetition penalty 1.05-1.15)."""


class KVCacheParams(PluginParams):
    """Which KV cache ``generate`` builds (written as ``cache_implementation``/``cache_config``)."""

    implementation: Literal["dynamic", "static", "quantized", "offloaded"] = Field(
        "dynamic", description="dynamic (default), static (preallocated, for torch.compile), quantized "
                               "(fewer bytes per cached token), offloaded (layers parked in CPU RAM; CUDA only)")
    nbits: Literal[1, 2, 3, 4, 8] | None = Field(
        None, description="quantized: bits per cached element (8: fp8 in plain torch; 2-4: hqq or quanto)")
    backend: Literal["fp8", "hqq", "quanto"] | None = Field(
        None, description="quantized: fp8 (8 bits, no extra package), hqq (pip install hqq) or quanto; "
                          "default fp8 at 8 bits, hqq below")
    residual_length: int | None = Field(None, ge=0, le=65_536, description="quantized hqq/quanto: newest "
                                        "tokens kept in 16-bit before quantizing (transformers' default 128)")

    @model_validator(mode="after")
    def _bits_fit_backend(self) -> KVCacheParams:
        quantized_only = [k for k in ("nbits", "backend", "residual_length") if getattr(self, k) is not None]
        if self.implementation != "quantized" and quantized_only:
            raise ValueError(f"{', '.join(quantized_only)} only apply to implementation: quantized")
        backend = self.backend or default_backend(self.nbits)
        if self.nbits is not None and self.nbits not in QUANT_BACKENDS[backend].bits:
            allowed = ", ".join(str(b) for b in QUANT_BACKENDS[backend].bits)
            raise ValueError(f"backend {backend} takes nbits {allowed}, not {self.nbits}")
        if backend == "fp8" and self.residual_length is not None:
            raise ValueError("backend fp8 quantizes every token (no residual_length)")
        return self


class SamplingParams(PluginParams):
    preset: Literal["deterministic", "chat", "creative", "brainstorm", "code"] | None = Field(
        "chat", description="Starting values from docs/reference.md; explicit fields override them")
    temperature: float | None = Field(None, ge=0.0, le=5.0, description="Softmax temperature; 0 means greedy")
    top_k: int | None = Field(None, ge=0, le=100_000, description="Sample among the k most likely tokens (0: off)")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus: smallest set with this probability")
    min_p: float | None = Field(None, ge=0.0, lt=1.0, description="Drop tokens below min_p x the top probability")
    repetition_penalty: float | None = Field(None, ge=1.0, le=2.0, description="Penalty on repeated tokens (1: off)")
    max_new_tokens: int = Field(256, ge=1, le=1_000_000, description="Longest completion")
    assistant_model: str | None = Field(None, description="Draft model folder for speculative decoding "
                                        "(same tokenizer; used by `tunekit generate`)")
    num_assistant_tokens: int = Field(5, ge=1, le=128, description="Draft tokens proposed per step")
    kv_cache: KVCacheParams | None = Field(None, description="KV cache generate builds: {implementation, nbits, "
                                         "backend, residual_length} (default: dynamic)")


class SamplingSampler(Sampler[SamplingParams]):
    name = "sampling"
    summary = ("Temperature, top-k/top-p/min-p, repetition penalty and presets; optional speculative decoding "
               "and KV cache (quantized, static, offloaded)")

    def generation_config(self) -> dict[str, Any]:
        p = self.params
        values: dict[str, Any] = dict(PRESETS[p.preset]) if p.preset else {"do_sample": True}
        for key in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty"):
            value = getattr(p, key)
            if value is not None:
                values[key] = value
                if key != "repetition_penalty":
                    values["do_sample"] = True  # an explicit sampling knob beats a greedy preset
        if values.get("temperature") == 0.0:  # T=0 means greedy; transformers rejects sampling at T=0
            values = {k: v for k, v in values.items() if k not in ("temperature", "top_p", "top_k", "min_p")}
            values["do_sample"] = False
        if not values.get("do_sample"):  # greedy ignores the sampling knobs; strict validation refuses them
            values = {k: v for k, v in values.items() if k not in ("temperature", "top_p", "top_k", "min_p")}
        values["max_new_tokens"] = p.max_new_tokens
        if p.assistant_model:
            values["num_assistant_tokens"] = p.num_assistant_tokens
        if p.kv_cache is not None:
            c = p.kv_cache
            values.update(generation_keys(c.implementation, c.nbits, c.backend, c.residual_length))
        return values

    def apply(self, model: Any, ctx: Any) -> Any:
        model = super().apply(model, ctx)
        p = self.params
        if p.assistant_model:
            ctx.record("sampler", assistant_model=p.assistant_model)
        ctx.record("sampler", **self.generation_config())
        return model

