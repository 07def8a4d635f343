"""Architecture facts of a decoder-only transformer, torch-free.

The estimator, the recommender and every plugin's declarations (trainable parameters,
bits per weight) reason over these numbers, so a third-party plugin can be judged
without loading a single weight.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError

#: Linear modules of one Llama-style decoder layer, grouped the way users name them.
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTENTION_MODULES + MLP_MODULES
#: ``model_type`` values whose config fields mean what ``from_hf_config`` reads (separate q/k/v, gated MLP).
KNOWN_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
                         "gemma2", "gemma3_text", "phi3", "olmo", "olmo2", "granite", "cohere", "starcoder2",
                         "deepseek_v2", "internlm2", "yi", "smollm3"})


@dataclass(frozen=True)
class ModelArch:
    """What an estimator needs to know about a model; mirrors Hugging Face config fields."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int = 0
    tied_embeddings: bool = False
    max_context: int = 4096
    rope_type: str = "default"
    rope_theta: float = 10000.0
    experts: int = 0
    active_experts: int = 0
    moe_intermediate: int = 0
    family: str = ""
    aliases: tuple[str, ...] = field(default=())
    published_params_b: float = 0.0
    guessed: tuple[str, ...] = field(default=(), compare=False)  # what from_hf_config had to assume, said aloud

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    # -- shapes ---------------------------------------------------------------------------
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear module in one decoder layer (dense MLP or one expert)."""
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        mlp = self.moe_intermediate if self.experts else self.intermediate
        return {
            "q_proj": (self.hidden, q_out),
            "k_proj": (self.hidden, kv_out),
            "v_proj": (self.hidden, kv_out),
            "o_proj": (q_out, self.hidden),
            "gate_proj": (self.hidden, mlp),
            "up_proj": (self.hidden, mlp),
            "down_proj": (mlp, self.hidden),
        }

    def module_copies(self, module: str) -> int:
        """How many copies of ``module`` one layer holds (MoE layers hold one MLP per expert)."""
        return self.experts if (self.experts and module in MLP_MODULES) else 1

    def resolve_targets(self, targets: str | list[str] | tuple[str, ...]) -> list[str]:
        """Turn ``attention`` / ``mlp`` / ``all-linear`` or explicit names into module names."""
        if isinstance(targets, str):
            groups = {"attention": ATTENTION_MODULES, "mlp": MLP_MODULES, "all-linear": ALL_LINEAR}
            if targets in groups:
                return list(groups[targets])
            targets = [targets]
        known = set(ALL_LINEAR)
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise UsageError(f"unknown target modules {unknown}; known: {sorted(known)}")
        return list(targets)

    # -- counts ---------------------------------------------------------------------------
    def linear_params_per_layer(self, active_only: bool = False) -> int:
        return self._counts[1 if active_only else 0]

    @cached_property
    def _counts(self) -> tuple[int, int, int, int]:
        """Linear parameters per layer, the active ones, all parameters, the active ones: the facts are frozen,
        so they are counted once (the recommender asks thousands of times a run)."""
        linear, active = self._count_linear_params(False), self._count_linear_params(True)
        rest = self.embedding_params() + self.layers * 2 * self.hidden + self.hidden  # embeddings, norms
        return linear, active, self.layers * linear + rest, self.layers * active + rest

    def _count_linear_params(self, active_only: bool) -> int:
        total = 0
        for module, (d_in, d_out) in self.linear_shapes().items():
            copies = self.module_copies(module)
            if active_only and self.experts and module in MLP_MODULES:
                copies = self.active_experts
            total += d_in * d_out * copies
        if self.experts:
            total += self.hidden * self.experts  # router
        return total

    def embedding_params(self) -> int:
        """Input embeddings plus the lm_head when it is not tied."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def param_count(self, active_only: bool = False) -> int:
        """Total parameters: linears, embeddings and the RMSNorm weights."""
        return self._counts[3 if active_only else 2]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        return data

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: dict[str, Any], name: str = "local") -> ModelArch:
        """Read a transformers ``config.json`` dict (Llama, Mistral, Qwen2/3, Gemma, Phi-3 shapes)."""
        try:
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
            experts = int(config.get("num_local_experts") or config.get("num_experts") or 0)
            guessed = _guesses(config)
            arch = cls(
                name=name,
                layers=int(config["num_hidden_layers"]),
                hidden=hidden,
                intermediate=int(config.get("intermediate_size") or 4 * hidden),
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                vocab=int(config["vocab_size"]),
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                max_context=int(config.get("max_position_embeddings") or 4096),
                rope_type=str(rope.get("rope_type") or rope.get("type") or "default"),
                rope_theta=float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0),
                experts=experts,
                active_experts=int(config.get("num_experts_per_tok") or (2 if experts else 0)),
                moe_intermediate=int(config.get("moe_intermediate_size") or config.get("intermediate_size") or 0)
                if experts
                else 0,
                family=str(config.get("model_type", "")),
                guessed=guessed,
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError, OverflowError) as exc:
            raise UsageError(f"{name}: config.json: a decoder field tunekit needs is missing or malformed: "
                             f"{exc}") from None
        sizes = {"num_hidden_layers": arch.layers, "hidden_size": arch.hidden, "num_attention_heads": arch.heads,
                 "num_key_value_heads": arch.kv_heads, "vocab_size": arch.vocab, "head_dim": arch.head_dim}
        bad = [key for key, value in sizes.items() if value <= 0]
        if bad:  # a negative size would estimate negative memory
            raise UsageError(f"{name}: config.json {bad[0]} must be a positive integer, got {sizes[bad[0]]}")
        return arch

    @classmethod
    def from_path(cls, path: str | Path) -> ModelArch:
        """Read a local model folder or its ``config.json``."""
        path = Path(path)
        config_file = path / "config.json" if path.is_dir() else path
        if not config_file.is_file():
            raise UsageError(f"{path}: no config.json found")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or not UTF-8
            raise UsageError(f"{config_file}: not a readable JSON config: {exc}") from None
        if not isinstance(config, dict):
            raise UsageError(f"{config_file}: not a JSON object (a transformers config.json is one)")
        return cls.from_hf_config(config, name=str(path))


def _guesses(config: dict[str, Any]) -> tuple[str, ...]:
    """What reading ``config`` as a Llama-shaped decoder assumes, one line each, so estimates can warn."""
    model_type = str(config.get("model_type") or "")
    out = []
    if model_type not in KNOWN_TYPES:
        out.append(f"model_type '{model_type or '(none)'}' is not one tunekit knows: read as a Llama-style decoder "
                   "(separate q/k/v projections, gated MLP, untied head unless tie_word_embeddings); a fused-QKV or "
                   "non-gated model will be mis-sized")
    if not config.get("intermediate_size"):
        out.append("no intermediate_size: guessed 4 x hidden_size")
    if not config.get("num_key_value_heads"):
        out.append("no num_key_value_heads: guessed = num_attention_heads (no GQA)")
    return tuple(out)
