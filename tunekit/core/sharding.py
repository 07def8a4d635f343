"""What each distributed strategy shards, and which recipes cannot work under one (torch-free).

tunekit has no distributed code of its own: DDP and FSDP come from accelerate (through transformers'
Trainer), ZeRO from DeepSpeed through accelerate. These are the facts around them that the recipe
validator, the estimator and the launch config share:

- ``SHARDED`` / ``shard_divisor``: which training states each strategy splits over the processes. The
  estimator divides by the same numbers, so ``tunekit estimate --gpus N`` and the launch config agree.
- ``check``: recipes that cannot work under a strategy, refused while validating (before weights load).

The process side (rank, world size, signal handling) is ``tunekit.run.distributed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from tunekit.core.errors import RecipeError

if TYPE_CHECKING:
    from tunekit.core.recipe import ResolvedRecipe
    from tunekit.core.recipe_model import DistributedSection, Recipe

Strategy = Literal["none", "ddp", "fsdp", "zero2", "zero3"]
"""The recipe's ``distributed.strategy`` values; the CLI choices and the estimator read the same list."""
STRATEGIES: tuple[str, ...] = get_args(Strategy)
STATES = ("weights", "gradients", "optimizer")
_ALL = frozenset(STATES)
_GRADS_OPT = frozenset({"gradients", "optimizer"})

SHARDED: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "ddp": frozenset(),  # every rank holds everything; only the batch is split
    "zero2": _GRADS_OPT,  # ZeRO stage 2 (Rajbhandari et al. 2020): optimizer state + gradients
    "zero3": _ALL,  # ZeRO stage 3: + the weights themselves
    "fsdp": _ALL,  # FSDP full_shard = ZeRO-3; see FSDP_SHARDED for the other modes
}
"""Training states each strategy splits across processes (docs/reference.md: ZeRO-1/2/3 divide by N)."""

FSDP_SHARDED: dict[str, frozenset[str]] = {
    "full_shard": _ALL,
    "shard_grad_op": _GRADS_OPT,
    "hybrid_shard": _ALL,  # within a node; replicated across nodes
    "no_shard": frozenset(),
}

DEEPSPEED = frozenset({"zero2", "zero3"})

BNB_NAMES = frozenset({"nf4", "fp4", "int8"})
"""The built-in bitsandbytes quantizers; third-party ones are recognised by requiring bitsandbytes."""


def world_size(section: DistributedSection) -> int:
    """Processes the recipe asks for: one per GPU on every node (1 without a strategy)."""
    return 1 if section.strategy == "none" else section.gpus * section.nodes


def sharded_states(section: DistributedSection) -> frozenset[str]:
    """Which of weights/gradients/optimizer this section splits over its processes."""
    if section.strategy == "fsdp":
        return FSDP_SHARDED[section.sharding]
    return SHARDED[section.strategy]


def shard_divisor(section: DistributedSection, state: str) -> int:
    """What one process's share of ``state`` is divided by (1 = every process holds all of it)."""
    if state not in STATES:
        raise ValueError(f"unknown training state {state!r}; expected one of {STATES}")
    if state not in sharded_states(section):
        return 1
    if section.strategy == "fsdp" and section.sharding == "hybrid_shard":
        return section.gpus
    return world_size(section)


def offloaded_states(section: DistributedSection) -> frozenset[str]:
    """States moved to CPU memory: FSDP's CPUOffload takes parameters and gradients, and the optimizer
    step (so its state) follows them; ZeRO offloads parameters and optimizer state separately."""
    out: set[str] = set()
    if section.offload_params:
        out |= set(_ALL) if section.strategy == "fsdp" else {"weights"}
    if section.offload_optimizer:
        out.add("optimizer")
    return frozenset(out)


def mixed_precision(recipe: Recipe) -> str | None:
    """The launch config's precision: the section's explicit choice, else the train section's.

    None means "decided on the machine" (``train.precision: auto`` picks bf16 on GPUs that have it);
    the launch config then says bf16 for GPU runs and no for ``--cpu`` ones.
    """
    chosen = recipe.distributed.mixed_precision
    if chosen != "auto":
        return chosen
    train_precision = recipe.train.precision if recipe.train is not None else "auto"
    return {"auto": None, "fp32": "no", "bf16": "bf16", "fp16": "fp16"}[train_precision]


# -- cross-checks (run from recipe.check_cross_stage, before any weight loads) -----------------


def _bnb_bits(quantizer: Any) -> int | None:
    """4 or 8 for a bitsandbytes quantize-on-load plugin (built-in or third-party), None otherwise."""
    requires = getattr(quantizer, "requires", None)
    if "bitsandbytes" not in getattr(requires, "packages", ()) and getattr(quantizer, "name", "") not in BNB_NAMES:
        return None
    try:
        bits = float(quantizer.bits_per_weight())
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return 8 if getattr(quantizer, "name", "") == "int8" else 4
    return 4 if bits < 6 else 8


def _param(quantizer: Any, *names: str) -> Any:
    params = getattr(quantizer, "params", None)
    for name in names:
        value = getattr(params, name, None)
        if value is not None:
            return value
    return None


def _check_quantizer(resolved: ResolvedRecipe) -> None:
    recipe, source = resolved.recipe, resolved.source
    strategy = recipe.distributed.strategy
    quantizer = resolved.stages.get("quantizer")
    bits = _bnb_bits(quantizer) if quantizer is not None else None
    if bits is None or strategy not in {"fsdp", "zero3"}:
        return
    engine = "FSDP" if strategy == "fsdp" else "DeepSpeed ZeRO-3"
    if bits == 8:
        raise RecipeError(
            f"8-bit bitsandbytes weights cannot be sharded by {engine} (Int8Params are not flat-parameter "
            "compatible); use 4-bit nf4 (QLoRA) with quant_storage equal to the compute dtype, or strategy ddp/zero2",
            source=source, key="distributed.strategy")
    storage = _param(quantizer, "quant_storage", "bnb_4bit_quant_storage")
    compute = _param(quantizer, "compute_dtype", "bnb_4bit_compute_dtype")
    if compute in (None, "auto"):
        compute = "bfloat16"  # what 4-bit compute "auto" resolves to on GPUs, where FSDP/ZeRO-3 run
    if storage is None or str(storage) != str(compute):
        raise RecipeError(
            f"4-bit QLoRA under {engine} needs the packed weights stored in the compute dtype so they can be "
            f"sharded with the rest: set quantizer.quant_storage: {compute} (got {storage}); this is the "
            "FSDP/ZeRO-3 + QLoRA route transformers and PEFT document (bnb_4bit_quant_storage)",
            source=source, key="quantizer.quant_storage")
    if recipe.model.dtype not in ("auto", str(storage)):
        raise RecipeError(
            f"under {engine} the 16-bit weights and the packed 4-bit ones are sharded together: model.dtype "
            f"{recipe.model.dtype} must equal quantizer.quant_storage {storage}",
            source=source, key="model.dtype")


def _custom_optimizer(resolved: ResolvedRecipe) -> bool:
    from tunekit.core.kinds import Adapter

    adapter = resolved.stages.get("adapter")
    return isinstance(adapter, Adapter) and type(adapter).optimizer is not Adapter.optimizer


def check(resolved: ResolvedRecipe) -> None:
    """Refuse distributed recipes that cannot work, with the reason, before any weight loads."""
    recipe, source = resolved.recipe, resolved.source
    section = recipe.distributed
    if section.strategy == "none":
        return
    if recipe.model.device_map:
        raise RecipeError(
            "model.device_map spreads one copy of the model over the GPUs of one process; under "
            f"{section.strategy} every process places its own copy or shard: drop model.device_map",
            source=source, key="model.device_map")
    train = recipe.train
    if train is not None and section.mixed_precision != "auto" and train.precision != "auto":
        wanted = {"fp32": "no"}.get(train.precision, train.precision)
        if wanted != section.mixed_precision:
            raise RecipeError(
                f"distributed.mixed_precision {section.mixed_precision} contradicts train.precision "
                f"{train.precision}; set one of them (or leave distributed.mixed_precision: auto)",
                source=source, key="distributed.mixed_precision")
    if train is not None and section.activation_checkpointing and train.gradient_checkpointing:
        raise RecipeError(
            "choose one: FSDP activation_checkpointing or train.gradient_checkpointing (the Trainer refuses both)",
            source=source, key="distributed.activation_checkpointing")
    if section.offload_optimizer and train is not None:
        if train.optimizer != "adamw" or _custom_optimizer(resolved):
            raise RecipeError(
                "offload_optimizer runs DeepSpeed's own CPU AdamW; it cannot offload "
                f"'{train.optimizer}' or an adapter's custom optimizer (LoRA+, LoRA-FA)",
                source=source, key="distributed.offload_optimizer")
    _check_quantizer(resolved)
