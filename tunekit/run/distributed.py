"""This process's place in a distributed run: rank and world size from the launcher, and the set-up
``tunekit apply`` does before loading weights under ``accelerate launch`` or torchrun.

What each strategy shards, and which recipes cannot work under one, is ``tunekit.core.sharding``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import MissingDependencyError, UsageError
from tunekit.core.sharding import DEEPSPEED
from tunekit.run import interrupts

if TYPE_CHECKING:
    from tunekit.core.recipe_model import Recipe

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


__all__ = ["ProcessInfo", "check_deepspeed", "is_main_process", "main_only_log", "prepare_process", "process_info",
           "record"]
