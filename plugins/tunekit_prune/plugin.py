"""Magnitude pruning: layer-wise or global unstructured sparsity, or N:M (2:4) masks.

Through ``torch.nn.utils.prune`` (L1 magnitude), made permanent with ``prune.remove`` before the model
leaves the stage: a saved pruning parametrization (``weight_orig`` + ``weight_mask``) loads back into a
plain model as missing/unexpected keys and silently loses the weights. Magnitude pruning costs quality
that only a healing fine-tune recovers (docs/reference.md: Llama-2-7B wikitext perplexity 5.12 dense ->
14.89 at 50% unstructured, 54.59 at 2:4); the stage records a warning in the model card saying so.
Declarations are torch-free; the work is in :mod:`tunekit_prune.magnitude`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from tunekit import Effects, PluginParams, Pruner

if TYPE_CHECKING:
    from tunekit import StageContext

_NM = re.compile(r"^(\d+):(\d+)$")


class MagnitudeParams(PluginParams):
    sparsity: float = Field(0.5, gt=0.0, lt=1.0, description="Fraction of targeted weights set to zero "
                            "(ignored with n_m, which fixes it to 1 - N/M)")
    scope: Literal["layer", "global"] = Field("layer", description="layer: each matrix loses `sparsity` of its "
                                              "weights; global: smallest weights across all targeted matrices")
    n_m: str | None = Field(None, description="N:M semi-structured pattern, e.g. '2:4' (keep N of every M "
                            "consecutive input weights; 2:4 runs on sparse tensor cores)")
    targets: str | list[str] = Field("all-linear", description="Modules to prune: all-linear, attention, mlp, "
                                     "or names like [q_proj, up_proj]; embeddings and lm_head are never pruned")

    @field_validator("n_m")
    @classmethod
    def _check_nm(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _NM.match(value.strip())
        if not match or not 0 < int(match.group(1)) < int(match.group(2)) <= 64:
            raise ValueError(f"n_m must look like '2:4' with 0 < N < M <= 64, got {value!r}")
        return value.strip()


class MagnitudePruner(Pruner[MagnitudeParams]):
    name = "magnitude"
    summary = "Zero the smallest-magnitude weights (layer-wise, global, or 2:4); needs a healing fine-tune"
    effects = Effects(quality_cost=1.9, speedup=1.0, notes=(
        "Llama-2-7B 50% unstructured magnitude: wikitext ppl 5.12 -> 14.89 (Wanda paper); 2:4: 54.59",
        "needs a healing fine-tune (LoRA on the pruned model), most of all 2:4",
        "zeros alone do not speed up dense kernels; 2:4 needs sparse tensor-core kernels"))

    def nm(self) -> tuple[int, int] | None:
        p = self.params
        if p.n_m is None:
            return None
        n, m = p.n_m.split(":")
        return int(n), int(m)

    def sparsity(self) -> float:
        nm = self.nm()
        if nm is not None:
            return 1.0 - nm[0] / nm[1]
        return float(self.params.sparsity)

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_prune.magnitude import prune_model

        return prune_model(self, model, ctx)

