"""Several processes: what each strategy shards, which recipes cannot work, and this process's place.

tunekit has no distributed code of its own: DDP and FSDP come from accelerate (through transformers'
Trainer), ZeRO from DeepSpeed through accelerate. This module holds the rules around them, torch-free:

- ``SHARDED`` / ``shard_divisor``: which training states each strategy splits over the processes. The
  estimator divides by the same numbers, so ``tunekit estimate --gpus N`` and the launch config agree.
- ``check``: recipes that cannot work under a strategy, refused while validating (before weights load).
- ``process_info`` / ``prepare_process``: the rank and world size a launcher gave this process, and the
  set-up ``tunekit apply`` does before loading weights when it runs under ``accelerate launch`` or torchrun.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from tunekit import interrupts
from tunekit.errors import MissingDependencyError, RecipeError, UsageError

if TYPE_CHECKING:
    from tunekit.recipe import ResolvedRecipe
    from tunekit.recipe_model import DistributedSection, Recipe

STRATEGIES = ("none", "ddp", "fsdp", "zero2", "zero3")
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
"""Training states each strategy splits across processes (REFERENCE.md: ZeRO-1/2/3 divide by N)."""

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
    from tunekit.kinds import Adapter

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


# -- this process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in a launched job (torchrun / accelerate set these variables)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def launched(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise UsageError(f"environment variable {name}={value!r} is not an integer") from None
    return default


def process_info() -> ProcessInfo:
    """Rank and world size from the launcher's environment (torchrun, accelerate, MPI), without torch."""
    return ProcessInfo(
        world_size=_env_int("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", default=1),
        rank=_env_int("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", default=0),
        local_rank=_env_int("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", default=0),
    )


def is_main_process() -> bool:
    """Only rank 0 prints progress, evaluates global numbers and writes the output."""
    return process_info().is_main


def check_deepspeed(strategy: str) -> None:
    """ZeRO strategies need the ``deepspeed`` package (the ``tunekit[deepspeed]`` extra, GPU machines)."""
    if strategy in DEEPSPEED and importlib.util.find_spec("deepspeed") is None:
        raise MissingDependencyError(
            f"strategy {strategy} runs on DeepSpeed, which is not installed: pip install 'tunekit[deepspeed]'")


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # torchrun's agent sends SIGTERM to the surviving ranks when one fails: turn it into an exception so
    # the pipeline's clean-up (remove the temporary output) runs instead of the process vanishing.
    interrupts.interrupt(signum, "another rank failed?")


def prepare_process(recipe: Recipe, *, cuda_available: bool | None = None) -> ProcessInfo:
    """Set-up ``tunekit apply`` does under a launcher, before any weight loads.

    Refuses launches that would silently do something other than the recipe says (an FSDP or ZeRO
    recipe under a launcher that did not configure FSDP/DeepSpeed), lets a CPU-only machine run DDP
    over gloo, and makes a SIGTERM from the launcher clean up like Ctrl-C does.
    """
    info = process_info()
    strategy = recipe.distributed.strategy
    check_deepspeed(strategy)
    if not info.launched:
        return info
    if strategy == "none":
        raise UsageError(
            f"this process is one of {info.world_size} launched ones but the recipe's distributed.strategy is "
            "none: set distributed.strategy (ddp, fsdp, zero2, zero3), e.g. --set distributed.strategy=ddp")
    if strategy == "fsdp" and os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true":
        raise UsageError("strategy fsdp needs a launcher that configures FSDP: run `tunekit launch RECIPE`, or "
                         "`accelerate launch --config_file` with the file `tunekit launch --dry-run` writes")
    if strategy in DEEPSPEED and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() != "true":
        raise UsageError(f"strategy {strategy} needs a launcher that configures DeepSpeed: run `tunekit launch "
                         "RECIPE`, or `accelerate launch --config_file` with the file it writes")
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        if strategy != "ddp":
            raise UsageError(f"strategy {strategy} needs GPUs (accelerate runs FSDP and DeepSpeed only on "
                             "accelerators); on CPU use strategy ddp (gloo)")
        os.environ["ACCELERATE_USE_CPU"] = "true"  # accelerate then picks MULTI_CPU with gloo
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    return info


def record(info: ProcessInfo, recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """The resolved recipe as written to the output, with the world size this run really had."""
    section = dict(recipe_dict.get("distributed") or {})
    section["world_size"] = info.world_size
    return {**recipe_dict, "distributed": section}


def main_only_log(log: Any) -> Any:
    """Wrap a log callable so that only rank 0 prints (others would repeat every line N times)."""
    if is_main_process():
        return log

    def silent(message: str) -> None:
        del message

    return silent


__all__ = [
    "SHARDED",
    "STATES",
    "STRATEGIES",
    "ProcessInfo",
    "check",
    "check_deepspeed",
    "is_main_process",
    "mixed_precision",
    "prepare_process",
    "process_info",
    "record",
    "shard_divisor",
    "sharded_states",
    "world_size",
]
