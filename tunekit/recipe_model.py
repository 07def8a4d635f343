"""The recipe schema (pass one of validation): sections and stage slots, no plugin fields.

Each stage slot holds ``{method: NAME, ...params}`` as a plain mapping here; the named plugin's own
``Params`` model validates the rest in pass two (``tunekit.recipe.resolve_stages``). The host never
merges plugin fields into one flat config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunekit.kinds import KINDS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Section):
    id: str | None = Field(None, description="Catalog id or alias (e.g. llama-3.1-8b), for estimates")
    path: str | None = Field(None, description="Local Hugging Face model folder (or a .gguf file)")
    gguf_file: str | None = Field(None, description="GGUF file name inside `path`, loaded through transformers")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Load dtype")
    device_map: str | None = Field(None, description="transformers device_map, e.g. auto")


class TrainSection(Section):
    data: str | None = Field(None, description="Training data: .txt, or .jsonl with text or instruction/input/output")
    template: str | None = Field(None, description="Prompt template for instruction data ({instruction}, {input})")
    chat_template: bool = Field(False, description="Render instruction data with the tokenizer's chat template")
    completion_only: bool = Field(True, description="Loss on completions only for instruction data")
    seq_len: int = Field(512, ge=8, le=1_048_576, description="Tokens per training sequence")
    packing: bool = Field(True, description="Pack text into full seq_len blocks")
    batch_size: int = Field(1, ge=1, le=4096, description="Micro-batch per device")
    grad_accum: int = Field(1, ge=1, le=4096, description="Gradient accumulation steps")
    epochs: float = Field(1.0, gt=0, le=1000, description="Epochs (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps")
    lr: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate")
    scheduler: Literal["constant", "linear", "cosine"] = Field("cosine", description="LR schedule")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="AdamW weight decay")
    optimizer: Literal["adamw", "adamw-8bit", "sgd"] = Field("adamw", description="Optimizer")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Training precision")
    eval_split: float = Field(0.05, ge=0, lt=1, description="Fraction of training data held out for eval loss")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (for --resume)")
    seed: int = Field(42, ge=0, description="Random seed")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many examples")


class EvalSection(Section):
    data: str | None = Field(None, description="Held-out text for perplexity (default: the shipped text)")
    perplexity: bool = Field(True, description="Measure perplexity before and after")
    seq_len: int = Field(256, ge=8, description="Window length for perplexity")
    stride: int | None = Field(None, ge=1, description="Window stride (default: seq_len, non-overlapping)")
    max_tokens: int | None = Field(16384, ge=16, description="Evaluate on at most this many tokens")
    tasks: list[Literal["rouge", "bleu"]] = Field(default_factory=list, description="Extra metrics vs references")
    references: str | None = Field(None, description="JSONL with prompt/reference for ROUGE/BLEU")


class OutputSection(Section):
    dir: str | None = Field(None, description="Output directory (the CLI's --output wins)")
    formats: list[str] = Field(default_factory=lambda: ["hf"], description="Export formats, e.g. hf, merged")
    merge: bool = Field(False, description="Also save the adapter merged into the base")


class DistributedSection(Section):
    strategy: Literal["none", "ddp", "fsdp", "zero2", "zero3"] = Field("none", description="Multi-GPU strategy")
    gpus: int = Field(1, ge=1, le=1024, description="GPUs per node")
    nodes: int = Field(1, ge=1, le=1024, description="Machines")
    offload_params: bool = Field(False, description="Offload parameters to CPU (FSDP/ZeRO-3)")
    offload_optimizer: bool = Field(False, description="Offload optimizer state to CPU")
    activation_checkpointing: bool = Field(False, description="FSDP activation checkpointing")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("bf16", description="Mixed precision")


class Recipe(Section):
    """A validated recipe. Stage slots stay plain mappings until pass two."""

    name: str = Field("recipe", description="Short name, used in reports")
    description: str = Field("", description="What the recipe is for")
    extends: list[str] | None = Field(None, description="Parent recipes, merged in order, this file last")
    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[arg-type]
    quantizer: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    adapter: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    context: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    pruner: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    sampler: dict[str, Any] | None = Field(None, description="{method: NAME (default sampling), ...params}")
    train: TrainSection | None = Field(None, description="Fine-tuning; needs an adapter")
    eval: EvalSection = Field(default_factory=EvalSection)  # type: ignore[arg-type]
    output: OutputSection = Field(default_factory=OutputSection)  # type: ignore[arg-type]
    distributed: DistributedSection = Field(default_factory=DistributedSection)  # type: ignore[arg-type]

    @field_validator("extends", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator(*KINDS, mode="before")
    @classmethod
    def _stage_has_method(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("expected a mapping like {method: NAME, ...} or null")
        if info.field_name == "sampler":
            value = {"method": "sampling", **value}
        method = value.get("method")
        if not isinstance(method, str) or not method:
            raise ValueError("needs 'method: NAME' naming an installed plugin (see `tunekit plugins`)")
        return value
