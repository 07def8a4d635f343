"""The ``sampling`` sampler: decoding controls written as the output's ``generation_config.json``.

Presets come from docs/reference.md ("Decoding"): deterministic (greedy; Q&A, code), chat (T 0.7, top-p
0.9), creative (1.0 / 0.95), brainstorm (1.2 / 0.98), code (T 0.2, top-p 0.95: near-deterministic with
a little variety). Explicit fields override the preset. ``assistant_model`` names a smaller model
folder for speculative (assisted) decoding — outputs stay those of the main model, 2-3x faster where
the draft agrees (Leviathan et al. 2023); ``tunekit generate`` loads it, the output records its path.
Torch-free: the base class's ``apply`` sets ``model.generation_config``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tunekit import PluginParams, Sampler

PRESETS: dict[str, dict[str, Any]] = {
    "deterministic": {"do_sample": False},
    "chat": {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.05},
    "creative": {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "repetition_penalty": 1.05},
    "brainstorm": {"do_sample": True, "temperature": 1.2, "top_p": 0.98, "repetition_penalty": 1.1},
    "code": {"do_sample": True, "temperature": 0.2, "top_p": 0.95},
}
"""Preset -> GenerationConfig values (docs/reference.md "Decoding"; repetition penalty 1.05-1.15)."""


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


class SamplingSampler(Sampler[SamplingParams]):
    name = "sampling"
    summary = "Temperature, top-k/top-p/min-p, repetition penalty and presets; optional speculative decoding"

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
        return values

    def apply(self, model: Any, ctx: Any) -> Any:
        model = super().apply(model, ctx)
        p = self.params
        if p.assistant_model:
            ctx.record("sampler", assistant_model=p.assistant_model)
        ctx.record("sampler", **self.generation_config())
        return model

