"""Turn a recipe's ``distributed`` section into the files and the command accelerate itself runs.

``tunekit launch`` writes an accelerate config (the YAML that ``accelerate config`` would write, loaded by
``accelerate.commands.config.config_args.load_config_from_file``) and, for ZeRO, a DeepSpeed JSON whose
batch, accumulation and precision fields are ``"auto"`` so that transformers' Trainer fills them from the
recipe's ``train`` section — one source of truth. Everything here is torch-free.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunekit.core.errors import UsageError
from tunekit.core.recipe_model import Recipe
from tunekit.core.sharding import DEEPSPEED, mixed_precision, world_size

ACCELERATE_FILE = "accelerate_config.yaml"
DEEPSPEED_FILE = "deepspeed_config.json"
DEFAULT_PORT = 29500


def decoder_layer_classes(recipe: Recipe, model_path: str | Path | None) -> list[str] | None:
    """The FSDP wrap unit: the recipe's ``wrap_classes``, else the decoder layer named after the model's
    ``architectures`` entry in config.json (``LlamaForCausalLM`` -> ``LlamaDecoderLayer``, the transformers
    naming for Llama, Mistral, Qwen2/3, Gemma2/3, Phi3, Mixtral), else None: accelerate then wraps the
    model's own ``_no_split_modules``, which names the same class."""
    section = recipe.distributed
    if section.wrap_classes:
        return list(section.wrap_classes)
    path = Path(model_path) if model_path else None
    config = (path if path is not None and path.is_dir() else path.parent if path is not None else None)
    if config is None or not (config / "config.json").is_file():
        return None
    try:
        architectures = json.loads((config / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return None
    names = [a[: -len("ForCausalLM")] + "DecoderLayer" for a in architectures if a.endswith("ForCausalLM")]
    return names[:1] or None


def _fsdp_config(recipe: Recipe, wrap_classes: list[str] | None) -> dict[str, Any]:
    section = recipe.distributed
    config: dict[str, Any] = {
        "fsdp_version": section.fsdp_version,
        "fsdp_offload_params": section.offload_params,
        # A full state dict on rank 0 at save time: the adapter or model written is the whole one.
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": section.cpu_ram_efficient_loading,
        "fsdp_activation_checkpointing": section.activation_checkpointing,
    }
    wrap = {"transformer": "TRANSFORMER_BASED_WRAP", "size": "SIZE_BASED_WRAP", "none": "NO_WRAP"}[section.auto_wrap]
    config["fsdp_auto_wrap_policy"] = wrap
    if section.auto_wrap == "transformer" and wrap_classes:
        config["fsdp_transformer_layer_cls_to_wrap"] = ",".join(wrap_classes)
    if section.auto_wrap == "size":
        config["fsdp_min_num_params"] = section.min_num_params
    if section.fsdp_version == 1:
        # accelerate's questionnaire stores FSDP1's strategy as reshard_after_forward, its launcher reads
        # sharding_strategy: write both so either path sees the recipe's choice.
        config["fsdp_sharding_strategy"] = section.sharding.upper()
        config["fsdp_reshard_after_forward"] = section.sharding.upper()
        config["fsdp_backward_prefetch"] = "BACKWARD_PRE"
        config["fsdp_forward_prefetch"] = False
        # PEFT's FSDP (and FSDP+QLoRA) recipe: use_orig_params false, the Trainer wraps the adapter layers
        # in their own units; cpu_ram_efficient_loading requires sync_module_states. A full fine-tune keeps
        # the original parameters: a flat parameter must be all trainable or all frozen, and
        # train.trainable freezes some weights inside a wrapped layer.
        config["fsdp_use_orig_params"] = recipe.adapter is None

        config["fsdp_sync_module_states"] = True
    else:
        config["fsdp_reshard_after_forward"] = section.sharding == "full_shard"
    return config


def deepspeed_config(recipe: Recipe) -> dict[str, Any]:
    """DeepSpeed JSON for zero2/zero3; ``"auto"`` fields are filled by the Trainer from the train section."""
    section = recipe.distributed
    if section.strategy not in DEEPSPEED:
        raise UsageError(f"no DeepSpeed config for strategy {section.strategy}")
    stage = 3 if section.strategy == "zero3" else 2
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": section.overlap_comm,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if section.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": section.zero_save_16bit,
            "sub_group_size": 1_000_000_000,
        })
        if section.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "wall_clock_breakdown": False,
    }
    if section.offload_optimizer:
        # ZeRO-Offload steps the optimizer on the CPU with DeepSpeed's own AdamW (see core.sharding.check).
        config["optimizer"] = {"type": "AdamW", "params": {
            "lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}}
    return config


def accelerate_config(
    recipe: Recipe,
    *,
    machine_rank: int = 0,
    main_address: str | None = None,
    main_port: int = DEFAULT_PORT,
    deepspeed_file: Path | None = None,
    wrap_classes: list[str] | None = None,
    cpu: bool = False,
) -> dict[str, Any]:
    """The accelerate config (``ClusterConfig`` fields) for the recipe's strategy."""
    section = recipe.distributed
    if section.strategy == "none":
        raise UsageError("distributed.strategy is none: nothing to launch (set ddp, fsdp, zero2 or zero3)")
    if cpu and section.strategy != "ddp":
        raise UsageError(f"--cpu runs DDP over gloo only; accelerate runs {section.strategy} on GPUs")
    if section.nodes > 1 and not main_address:
        raise UsageError("several nodes need --main-address (the host name or IP of node rank 0)")
    if not 0 <= machine_rank < section.nodes:
        raise UsageError(f"--node-rank {machine_rank} is outside 0..{section.nodes - 1}")
    precision = mixed_precision(recipe) or ("no" if cpu else "bf16")
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[
            section.strategy],
        "downcast_bf16": "no",
        "enable_cpu_affinity": False,
        "gpu_ids": "all",
        "machine_rank": machine_rank,
        "main_training_function": "main",
        "mixed_precision": precision,
        "num_machines": section.nodes,
        "num_processes": world_size(section),
        "rdzv_backend": "static",
        "same_network": True,
        # use_cpu would make accelerate use its one-process launcher: a CPU DDP run goes through torchrun
        # like a GPU one, with ACCELERATE_USE_CPU=true in the environment (see LaunchPlan.env).
        "use_cpu": False,
        "main_process_port": main_port,
    }
    if main_address:
        config["main_process_ip"] = main_address
    if section.strategy == "fsdp":
        config["fsdp_config"] = _fsdp_config(recipe, wrap_classes)
    if section.strategy in DEEPSPEED:
        if deepspeed_file is None:
            raise UsageError("a ZeRO strategy needs the DeepSpeed JSON path")
        # Precision lives in the DeepSpeed JSON ("auto", from the Trainer); accelerate refuses it in both.
        del config["mixed_precision"]
        config["deepspeed_config"] = {
            "deepspeed_config_file": str(deepspeed_file),
            "deepspeed_multinode_launcher": "standard",
            "zero3_init_flag": section.strategy == "zero3" and section.zero_init,
        }
    return config


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_dir(output: Path) -> Path:
    """Config files go beside the output (``OUT.launch/``): the output itself is written atomically later."""
    return output.with_name(output.name + ".launch")


def accelerate_executable() -> str:
    """The ``accelerate`` of this environment (beside this Python), so the line runs the same install."""
    candidate = Path(sys.executable).parent / "accelerate"
    return str(candidate) if candidate.is_file() else "accelerate"


@dataclass
class LaunchPlan:
    """What ``tunekit launch`` writes and runs."""

    config_file: Path
    deepspeed_file: Path | None
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command_line(self) -> str:
        """The exact line, environment prefix included, that a user can paste on each node."""
        prefix = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        return " ".join([*prefix, shlex.join(self.argv)])


def plan_launch(
    recipe: Recipe,
    *,
    output: Path,
    apply_argv: list[str],
    model_path: str | Path | None = None,
    node_rank: int = 0,
    main_address: str | None = None,
    main_port: int | None = None,
    cpu: bool = False,
) -> LaunchPlan:
    """Write the config files beside ``output`` and return the ``accelerate launch`` command for them.

    ``apply_argv`` is everything after ``tunekit`` (``apply RECIPE ...``), run as ``python -m tunekit``.
    """
    section = recipe.distributed
    port = main_port or section.main_port or (DEFAULT_PORT if section.nodes > 1 else free_port())
    folder = launch_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    deepspeed_file: Path | None = None
    if section.strategy in DEEPSPEED:
        deepspeed_file = (folder / DEEPSPEED_FILE).resolve()
        deepspeed_file.write_text(json.dumps(deepspeed_config(recipe), indent=2) + "\n", encoding="utf-8")
    config = accelerate_config(
        recipe, machine_rank=node_rank, main_address=main_address, main_port=port, deepspeed_file=deepspeed_file,
        wrap_classes=decoder_layer_classes(recipe, model_path) if section.strategy == "fsdp" else None, cpu=cpu)
    config_file = (folder / ACCELERATE_FILE).resolve()
    config_file.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
    argv = [accelerate_executable(), "launch", "--config_file", str(config_file), "-m", "tunekit", *apply_argv]
    return LaunchPlan(config_file, deepspeed_file, argv, {"ACCELERATE_USE_CPU": "true"} if cpu else {})
