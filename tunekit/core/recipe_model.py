"""The recipe schema (pass one of validation): sections and stage slots, no plugin fields.

Each stage slot holds ``{method: NAME, ...params}`` as a plain mapping here; the named plugin's own
``Params`` model validates the rest in pass two (``tunekit.core.recipe.resolve_stages``). The host never
merges plugin fields into one flat config.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunekit.core.kinds import KINDS
from tunekit.core.sharding import Strategy


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OffloadSection(Section):
    """Where the layers go when the model does not fit the GPU (accelerate's big-model inference)."""

    gpu_gb: float | None = Field(None, gt=0, description="GPU memory per GPU for weights, GB (default: none used)")
    cpu_gb: float | None = Field(None, gt=0, description="CPU RAM for weights, GB (layers beyond go to disk)")
    disk: str | None = Field(None, description="Folder for layers that fit neither (default: in the run's scratch)")


class ModelSection(Section):
    id: str | None = Field(None, description="Catalog id or alias (e.g. llama-3.1-8b), for estimates")
    path: str | None = Field(None, description="Local Hugging Face model folder (or a .gguf file)")
    gguf_file: str | None = Field(None, description="GGUF file name inside `path`, loaded through transformers")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Load dtype")
    device_map: str | None = Field(None, description="transformers device_map, e.g. auto")
    trust_remote_code: bool = Field(False, description="Run Python code a model folder ships (auto_map); "
                                    "passed to every load so transformers never asks on stdin")
    offload: OffloadSection | Literal["auto"] | None = Field(
        None, description="Layer offload for inference: {gpu_gb, cpu_gb, disk} or auto (sized from the estimate)")

    @model_validator(mode="after")
    def _one_placement(self) -> ModelSection:
        if self.offload is not None and self.device_map is not None:
            raise ValueError("offload sets the device_map itself: drop device_map")
        return self


class TrainSection(Section):
    data: str | None = Field(None, description="Training data: .txt, or .jsonl with text, instruction/input/output "
                             "or chat turns (messages: [{role, content}])")
    template: str | None = Field(None, description="Prompt template for instruction data ({instruction}, {input})")
    chat_template: bool = Field(False, description="Render instruction data with the tokenizer's chat template")
    completion_only: bool = Field(True, description="Loss on completions only for instruction data")
    seq_len: int = Field(512, ge=8, le=1_048_576, description="Tokens per training sequence")
    packing: bool = Field(True, description="Pack text into full seq_len blocks")
    pack_examples: bool = Field(
        False, description="Pack instruction and chat examples into seq_len rows; position ids restart per "
        "example so attention stays inside each one")
    batch_size: int = Field(1, ge=1, le=4096, description="Micro-batch per device")
    grad_accum: int = Field(1, ge=1, le=4096, description="Gradient accumulation steps")
    epochs: float = Field(1.0, gt=0, le=1000, description="Epochs (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps")
    lr: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate")
    scheduler: Literal["constant", "linear", "cosine"] = Field("cosine", description="LR schedule")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="AdamW weight decay")
    optimizer: Literal["adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit", "sgd"] = Field(
        "adamw", description="Optimizer; paged-* (bitsandbytes) page AdamW state to the CPU under memory pressure")
    trainable: list[str] | None = Field(
        None, description="Full fine-tuning only (no adapter): train just the parameters whose names match one "
        "of these regular expressions (re.search), e.g. 'layers\\.(22|23)\\.' or 'norm'; default all")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory")
    chunked_loss: bool = Field(
        False, description="Compute the loss over chunks of the sequence (lm_head, fp32 upcast and cross-entropy "
        "per chunk, recomputed in backward): the full logits are never held")
    activation_offload: bool = Field(
        False, description="Keep the activations saved for backward in CPU RAM (with gradient_checkpointing: "
        "each layer's input)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Training precision")
    eval_split: float = Field(0.05, ge=0, lt=1, description="Fraction of training data held out for eval loss")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (for --resume)")
    save_total_limit: int | None = Field(None, ge=1, description="Keep only the newest N checkpoints")
    seed: int = Field(42, ge=0, description="Random seed")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many examples")
    report_to: list[Literal["mlflow", "tensorboard", "wandb"]] = Field(
        default_factory=list, description="Run trackers the Trainer logs to; with mlflow, tunekit's own numbers "
                                          "(perplexity before/after, peak memory, the recipe) join the same run")

    @field_validator("trainable")
    @classmethod
    def _patterns_compile(cls, value: list[str] | None) -> list[str] | None:
        """A bad pattern is a validation error naming the key, not a crash after the weights loaded."""
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one pattern, or leave trainable out to train every weight")
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class EvalSection(Section):
    data: str | None = Field(None, description="Held-out text for perplexity (default: the shipped text)")
    perplexity: bool = Field(True, description="Measure perplexity before and after")
    seq_len: int = Field(256, ge=8, description="Window length for perplexity")
    stride: int | None = Field(None, ge=1, description="Window stride (default: seq_len, non-overlapping)")
    max_tokens: int | None = Field(16384, ge=16, description="Evaluate on at most this many tokens")
    tasks: list[Literal["rouge", "bleu"]] = Field(default_factory=list, description="Extra metrics vs references")
    references: str | None = Field(None, description="JSONL with prompt/reference for ROUGE/BLEU")
    check: bool = Field(True, description="Cheap checks (KL vs the loaded model, EOS/template) into "
                        "metrics.json; `tunekit check` runs all of them")


class OutputSection(Section):
    dir: str | None = Field(None, description="Output directory (the CLI's --output wins)")
    formats: list[str | dict[str, Any]] = Field(
        default_factory=lambda: list[str | dict[str, Any]](["hf"]), max_length=16,
        description="Export formats: hf, merged, or exporter plugins as 'gguf', 'gguf:q4_k_m', "
        "{gguf: q4_k_m} or {gguf: {type: q4_k_m, imatrix: true}}")
    merge: bool = Field(False, description="Also save the adapter merged into the base")


class ServeSection(Section):
    engine: Literal["hf", "vllm", "llama.cpp"] | None = Field(
        None, description="The engine that will serve the output (hf: transformers generate, vllm, llama.cpp): "
        "`tunekit estimate RECIPE` counts its prefill and KV cache the way that engine allocates them")


class DistributedSection(Section):
    """Several processes through accelerate (DDP, FSDP) or DeepSpeed ZeRO; see docs/distributed.md.

    Strategy names and what each shards are shared with the estimator (``tunekit.core.sharding.SHARDED``).
    """

    strategy: Strategy = Field(
        "none", description="none (one process), ddp (replicate), fsdp (shard), zero2/zero3 (DeepSpeed ZeRO)")
    gpus: int = Field(1, ge=1, le=1024, description="GPUs (processes) per node")
    nodes: int = Field(1, ge=1, le=1024, description="Machines")
    offload_params: bool = Field(False, description="Offload parameters to CPU (FSDP/ZeRO-3)")
    offload_optimizer: bool = Field(False, description="Offload optimizer state to CPU (ZeRO-2/3)")
    activation_checkpointing: bool = Field(False, description="FSDP activation checkpointing")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision of the launch config (auto: follow train.precision)")
    fsdp_version: Literal[1, 2] = Field(2, description="FSDP1 (FullyShardedDataParallel) or FSDP2 (fully_shard)")
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = Field(
        "full_shard", description="FSDP sharding: weights+grads+optimizer, grads+optimizer only (ZeRO-2-like), "
        "full within a node and replicated across nodes, or none (DDP); hybrid/no_shard need fsdp_version 1")
    auto_wrap: Literal["transformer", "size", "none"] = Field(
        "transformer",
        description="FSDP wrap unit: each decoder layer, modules above min_num_params, or the whole model")
    wrap_classes: list[str] | None = Field(
        None, description="Decoder layer class names to wrap (default: from the model's config.json "
        "architectures, else the model's _no_split_modules)")
    min_num_params: int = Field(100_000_000, ge=1, description="Parameters per FSDP unit for auto_wrap: size")
    cpu_ram_efficient_loading: bool = Field(
        True, description="FSDP: load weights on rank 0 only and broadcast (needed for big models and QLoRA)")
    zero_init: bool = Field(True, description="ZeRO-3: build the model already partitioned (zero.Init)")
    zero_save_16bit: bool = Field(True, description="ZeRO-3: gather full 16-bit weights when saving")
    overlap_comm: bool = Field(True, description="ZeRO: overlap gradient reduction with the backward pass")
    main_port: int | None = Field(
        None, ge=1, le=65535, description="Rendezvous port of the main process (default: 29500 across nodes, "
        "a free port on one node)")

    @model_validator(mode="after")
    def _options_fit_strategy(self) -> DistributedSection:
        """Options that the chosen engine does not have are errors, not silently ignored settings."""
        strategy = self.strategy
        if self.offload_params and strategy not in {"fsdp", "zero3"}:
            raise ValueError(f"offload_params needs sharded parameters (fsdp or zero3), not '{strategy}'")
        if self.offload_optimizer and strategy not in {"zero2", "zero3"}:
            hint = "; FSDP offloads optimizer state with offload_params" if strategy == "fsdp" else ""
            raise ValueError(f"offload_optimizer is a DeepSpeed ZeRO option (zero2/zero3), not '{strategy}'{hint}")
        if self.activation_checkpointing and strategy != "fsdp":
            raise ValueError("activation_checkpointing is FSDP's; for other strategies use "
                             "train.gradient_checkpointing")
        if strategy == "fsdp" and self.fsdp_version == 2 and self.sharding in {"hybrid_shard", "no_shard"}:
            raise ValueError(
                f"sharding '{self.sharding}' needs fsdp_version 1 (FSDP2 has full_shard and shard_grad_op)")
        if self.sharding == "hybrid_shard" and self.nodes == 1:
            raise ValueError("sharding 'hybrid_shard' replicates across nodes: it needs nodes > 1")
        return self


class Recipe(Section):
    """A validated recipe. Stage slots stay plain mappings until pass two."""

    name: str = Field("recipe", description="Short name, used in reports")
    description: str = Field("", description="What the recipe is for")
    extends: list[str] | None = Field(None, description="Parent recipes, merged in order, this file last")
    model: ModelSection = Field(default_factory=ModelSection,  # type: ignore[arg-type]
                                description="The model to start from")
    quantizer: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    adapter: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    context: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    pruner: dict[str, Any] | None = Field(None, description="{method: NAME, ...params}")
    sampler: dict[str, Any] | None = Field(None, description="{method: NAME (default sampling), ...params}")
    train: TrainSection | None = Field(
        None, description="Fine-tuning: the adapter's weights, or every weight (full fine-tuning) without one")
    eval: EvalSection = Field(default_factory=EvalSection,  # type: ignore[arg-type]
                              description="Measurements before and after")
    output: OutputSection = Field(default_factory=OutputSection,  # type: ignore[arg-type]
                                  description="What is written, and where")
    distributed: DistributedSection = Field(default_factory=DistributedSection,  # type: ignore[arg-type]
                                            description="Several processes or GPUs (training only)")
    serve: ServeSection = Field(default_factory=ServeSection,  # type: ignore[arg-type]
                                description="How the output will be served (read by the estimator)")

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
