"""`tunekit launch`: config files that accelerate itself accepts, and the exact command it runs.

Each generated file goes through accelerate's own code path: ``load_config_from_file`` (the config
classes), the launcher's argument validation and environment preparation, then the FSDP / DeepSpeed
plugin built from that environment, as it is inside every launched process.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from click.testing import CliRunner

from tunekit.cli.main import cli

RECIPE = """
name: tiny-dist
adapter: {method: lora, r: 8}
train: {max_steps: 2, seq_len: 64}
distributed: {strategy: ddp, gpus: 2}
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    return folder


def launch(*args: str) -> Any:
    return CliRunner().invoke(cli, ["launch", *args], catch_exceptions=False)


def accelerate_env(config_file: Path) -> tuple[Any, dict[str, str]]:
    """What `accelerate launch --config_file F -m tunekit apply` would put in each process's environment."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    config = load_config_from_file(str(config_file))
    assert isinstance(config, ClusterConfig)
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", "tunekit", "apply", "r"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _cmd, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return config, dict(env)


def dry_run(recipe: Path, tmp_path: Path, *extra: str, sets: tuple[str, ...] = ()) -> tuple[Any, Path]:
    out = tmp_path / "out"
    result = launch(str(recipe), "--dry-run", *extra, "--", "--output", str(out),
                    *[x for s in sets for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert not out.exists(), "a dry run must not create the output"
    return result, out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero2", "zero3"])
def test_dry_run_prints_the_command_and_writes_configs_accelerate_accepts(
        recipe: Path, tmp_path: Path, model_dir: Path, strategy: str) -> None:
    result, out = dry_run(recipe, tmp_path, "--gpus", "4", "--strategy", strategy, sets=(f"model.path={model_dir}",))
    folder = tmp_path / "out.launch"
    config_file = folder / "accelerate_config.yaml"
    command = result.output.strip().splitlines()[-1]
    argv = shlex.split(command)
    assert Path(argv[0]).name == "accelerate" and argv[1:4] == ["launch", "--config_file", str(config_file)]
    assert argv[4:8] == ["-m", "tunekit", "apply", str(recipe)]
    assert {"--set=distributed.gpus=4", f"--set=distributed.strategy={strategy}"} <= set(argv)
    assert argv[argv.index("--output") + 1] == str(out)

    config, env = accelerate_env(config_file)
    assert config.num_processes == 4 and config.num_machines == 1
    with mock.patch.dict(os.environ, env, clear=True):
        if strategy == "ddp":
            assert config.distributed_type.value == "MULTI_GPU"
            assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
        elif strategy == "fsdp":
            from accelerate.utils import FullyShardedDataParallelPlugin

            plugin = FullyShardedDataParallelPlugin()
            assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
            assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
            assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.cpu_ram_efficient_loading
        else:
            from accelerate.utils import DeepSpeedPlugin

            ds_file = folder / "deepspeed_config.json"
            assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == str(ds_file)
            plugin = DeepSpeedPlugin()
            assert plugin.zero_stage == (3 if strategy == "zero3" else 2)
            assert plugin.zero3_init_flag is (strategy == "zero3")
    if strategy in {"zero2", "zero3"}:
        assert f"deepspeed config:  {folder / 'deepspeed_config.json'}" in result.output
    else:
        assert not (folder / "deepspeed_config.json").exists()


def test_fsdp1_options_reach_the_plugin(recipe: Path, tmp_path: Path) -> None:
    _result, _out = dry_run(recipe, tmp_path, sets=(
        "distributed.strategy=fsdp", "distributed.fsdp_version=1", "distributed.sharding=shard_grad_op",
        "distributed.offload_params=true", "distributed.auto_wrap=size", "distributed.min_num_params=1000",
        "distributed.wrap_classes=[MyBlock]", "distributed.activation_checkpointing=true"))
    _config, env = accelerate_env(tmp_path / "out.launch" / "accelerate_config.yaml")
    from accelerate.utils import FullyShardedDataParallelPlugin

    # sync_module_states asks for the current GPU (the launched processes have one): pretend device 0.
    with mock.patch.dict(os.environ, env, clear=True), \
            mock.patch("accelerate.utils.dataclasses.is_cuda_available", return_value=True), \
            mock.patch("torch.cuda.current_device", return_value=0):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.sharding_strategy.name == "SHARD_GRAD_OP"
    assert plugin.cpu_offload.offload_params and plugin.activation_checkpointing
    assert plugin.min_num_params == 1000 and plugin.use_orig_params is False and plugin.sync_module_states


def test_fsdp1_full_finetune_keeps_the_original_parameters(recipe: Path, tmp_path: Path) -> None:
    """A flat parameter is all trainable or all frozen: train.trainable freezes some weights of a wrapped layer."""
    dry_run(recipe, tmp_path, sets=("adapter=null", "train.trainable=[norm]", "distributed.strategy=fsdp",
                                    "distributed.fsdp_version=1"))
    _config, env = accelerate_env(tmp_path / "out.launch" / "accelerate_config.yaml")
    from accelerate.utils import FullyShardedDataParallelPlugin

    with mock.patch.dict(os.environ, env, clear=True), \
            mock.patch("accelerate.utils.dataclasses.is_cuda_available", return_value=True), \
            mock.patch("torch.cuda.current_device", return_value=0):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.use_orig_params is True


def test_zero3_offload_json_is_filled_by_the_trainer(recipe: Path, tmp_path: Path) -> None:
    """Every "auto" in the DeepSpeed JSON is one transformers' Trainer fills from the train section."""
    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig as TrainerDeepSpeedConfig

    from tunekit.testing import build_tiny_model

    # transformers' class only gets its accelerate base when deepspeed is installed (a GPU extra); rebuild it
    # on that base so its own "auto"-filling methods run here unchanged.
    methods = {k: v for k, v in vars(TrainerDeepSpeedConfig).items() if k not in ("__init__", "__dict__",
                                                                                   "__weakref__")}
    HfTrainerDeepSpeedConfig = type("HfTrainerDeepSpeedConfig", (HfDeepSpeedConfig,), methods)

    dry_run(recipe, tmp_path, sets=("distributed.strategy=zero3", "distributed.offload_params=true",
                                    "distributed.offload_optimizer=true"))
    ds_file = tmp_path / "out.launch" / "deepspeed_config.json"
    raw = json.loads(ds_file.read_text())
    assert raw["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert raw["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert raw["optimizer"]["type"] == "AdamW"
    ds = HfTrainerDeepSpeedConfig(str(ds_file))
    ds._dtype, ds.mismatches = None, []
    args = TrainingArguments(output_dir=str(tmp_path / "t"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=4, learning_rate=1e-4, use_cpu=True, report_to="none")
    ds.trainer_config_process(args)
    model = build_tiny_model(hidden_size=128, intermediate_size=256, num_hidden_layers=1)
    ds.trainer_config_finalize(args, model, num_training_steps=10)  # raises if any "auto" is left unfilled
    assert ds.config["train_micro_batch_size_per_gpu"] == 2 and ds.config["gradient_accumulation_steps"] == 4
    assert ds.config["optimizer"]["params"]["lr"] == 1e-4


def test_multi_node_line(recipe: Path, tmp_path: Path) -> None:
    result, _out = dry_run(recipe, tmp_path, "--gpus", "8", "--nodes", "2", "--node-rank", "1",
                           "--main-address", "10.0.0.1", sets=("distributed.strategy=fsdp",))
    assert "run on each of the 2 nodes with its own --node-rank (this is node 1)" in result.output
    config, _env = accelerate_env(tmp_path / "out.launch" / "accelerate_config.yaml")
    assert (config.num_machines, config.num_processes, config.machine_rank) == (2, 16, 1)
    assert (config.main_process_ip, config.main_process_port) == ("10.0.0.1", 29500)
    assert "--set=distributed.nodes=2" in result.output


def test_cpu_line_runs_ddp_through_torchrun_with_gloo(recipe: Path, tmp_path: Path) -> None:
    result, _out = dry_run(recipe, tmp_path, "--cpu", "--main-port", "29999")
    assert result.output.strip().splitlines()[-1].startswith("ACCELERATE_USE_CPU=true ")
    config = yaml.safe_load((tmp_path / "out.launch" / "accelerate_config.yaml").read_text())
    # use_cpu: true would select accelerate's single-process launcher; DDP on CPU needs torchrun's.
    assert config["distributed_type"] == "MULTI_GPU" and config["use_cpu"] is False
    assert config["mixed_precision"] == "no" and config["main_process_port"] == 29999


@pytest.mark.parametrize(("args", "sets", "message"), [
    ((), ("distributed.strategy=none",), "nothing to launch"),
    (("--nodes", "2"), (), "need --main-address"),
    (("--nodes", "2", "--node-rank", "2", "--main-address", "h"), (), "outside 0..1"),
    (("--cpu",), ("distributed.strategy=fsdp",), "runs DDP over gloo only"),
    ((), ("distributed.strategy=fsdp", "model.device_map=auto"), "drop model.device_map"),
    ((), ("distributed.strategy=ddp", "distributed.offload_params=true"), "offload_params"),
])
def test_refusals_exit_2_and_write_nothing(recipe: Path, tmp_path: Path, args: tuple[str, ...],
                                            sets: tuple[str, ...], message: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["launch", str(recipe), "--dry-run", *args, "--", "--output", str(out),
                                      *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_output_is_required(recipe: Path) -> None:
    result = CliRunner().invoke(cli, ["launch", str(recipe), "--dry-run"])
    assert result.exit_code == 2 and "needs the output directory" in result.output


def test_zero_without_deepspeed_says_what_to_install(recipe: Path, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    result = CliRunner().invoke(cli, ["launch", str(recipe), "--", "--output", str(tmp_path / "o"),
                                      "--set", "distributed.strategy=zero2"])
    assert result.exit_code == 1 and "pip install 'tunekit[deepspeed]'" in result.output
