"""The distributed section, its sharding rules and the refusals made before any weight loads."""

from __future__ import annotations

import signal
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field, ValidationError

from tunekit import hookimpl
from tunekit.core import sharding
from tunekit.core.errors import MissingDependencyError, RecipeError, UsageError
from tunekit.core.kinds import PluginParams, Quantizer, Requirements
from tunekit.core.recipe import load_recipe
from tunekit.core.recipe_model import DistributedSection
from tunekit.core.registry import load_registry
from tunekit.run import distributed

BASE = """
adapter: {method: lora, r: 8}
train: {max_steps: 2}
"""


class _BnbParams(PluginParams):
    compute_dtype: str = Field("bfloat16")
    quant_storage: str = Field("uint8")


class FakeBnb4(Quantizer):
    """Stands for any bitsandbytes 4-bit plugin: recognised by what it declares, not by its name."""

    name = "test-bnb4"
    Params = _BnbParams
    requires: ClassVar[Requirements] = Requirements(packages=("bitsandbytes",), extra="bnb")
    on_load = True
    trainable = True

    def bits_per_weight(self) -> float:
        return 4.127


class FakeBnb8(FakeBnb4):
    name = "test-bnb8"

    def bits_per_weight(self) -> float:
        return 8.0


fake_plugins = types.ModuleType("fake_bnb_plugins")
fake_plugins.tunekit_quantizers = hookimpl(lambda: [FakeBnb4, FakeBnb8])  # type: ignore[attr-defined]


def resolve(tmp_path: Path, text: str, *sets: str) -> Any:
    path = tmp_path / "r.yaml"
    path.write_text(BASE + text)
    return load_recipe(path, overrides=list(sets), registry=load_registry(extra_modules=[fake_plugins]))


# -- the section -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"strategy": "ddp", "offload_params": True}, "offload_params needs sharded parameters"),
    ({"strategy": "zero2", "offload_params": True}, "offload_params needs sharded parameters"),
    ({"strategy": "fsdp", "offload_optimizer": True}, "FSDP offloads optimizer state with offload_params"),
    ({"strategy": "ddp", "activation_checkpointing": True}, "train.gradient_checkpointing"),
    ({"strategy": "fsdp", "sharding": "hybrid_shard", "nodes": 2}, "needs fsdp_version 1"),
    ({"strategy": "fsdp", "fsdp_version": 1, "sharding": "hybrid_shard"}, "needs nodes > 1"),
    ({"strategy": "fsdp", "gpus": 0}, "greater than or equal to 1"),
    ({"strategy": "fsdp", "main_port": 70000}, "less than or equal to 65535"),
    ({"strategy": "fsdp", "auto_wrap": "everything"}, "transformer"),
])
def test_section_refuses_options_its_engine_lacks(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DistributedSection(**fields)


def test_every_distributed_field_is_described() -> None:
    schema = DistributedSection.model_json_schema()["properties"]
    assert {"strategy", "sharding", "auto_wrap", "wrap_classes", "zero_init", "fsdp_version"} <= set(schema)
    assert all(prop.get("description") for prop in schema.values())


def test_section_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"distributed: .*offload_params"):
        resolve(tmp_path, "distributed: {strategy: ddp, offload_params: true}")


# -- sharding rules shared with the estimator -------------------------------------------------------


@pytest.mark.parametrize(("fields", "weights", "grads", "optimizer"), [
    ({"strategy": "none", "gpus": 8}, 1, 1, 1),
    ({"strategy": "ddp", "gpus": 8}, 1, 1, 1),
    ({"strategy": "zero2", "gpus": 8}, 1, 8, 8),
    ({"strategy": "zero3", "gpus": 8}, 8, 8, 8),
    ({"strategy": "fsdp", "gpus": 8}, 8, 8, 8),
    ({"strategy": "fsdp", "gpus": 4, "nodes": 2}, 8, 8, 8),
    ({"strategy": "fsdp", "gpus": 8, "sharding": "shard_grad_op"}, 1, 8, 8),
    ({"strategy": "fsdp", "gpus": 8, "fsdp_version": 1, "sharding": "no_shard"}, 1, 1, 1),
    ({"strategy": "fsdp", "gpus": 4, "nodes": 2, "fsdp_version": 1, "sharding": "hybrid_shard"}, 4, 4, 4),
])
def test_shard_divisor(fields: dict[str, Any], weights: int, grads: int, optimizer: int) -> None:
    section = DistributedSection(**fields)
    got = [sharding.shard_divisor(section, s) for s in ("weights", "gradients", "optimizer")]
    assert got == [weights, grads, optimizer]


@pytest.mark.parametrize("strategy", ["ddp", "zero2", "fsdp", "zero3"])
def test_estimator_divides_like_the_launch_config(strategy: str) -> None:
    """`tunekit estimate --gpus 8` must shard exactly what the generated accelerate/DeepSpeed config shards."""
    from tunekit.advise.estimate import estimate
    from tunekit.core.model_facts import resolve_model

    arch = resolve_model("llama-3.1-8b")
    one = estimate(arch, method="full", gpus=1, strategy="none").breakdown
    eight = estimate(arch, method="full", gpus=8, strategy=strategy).breakdown
    section = DistributedSection(strategy=strategy, gpus=8)  # type: ignore[arg-type]
    for state, key in (("weights", "weights"), ("gradients", "gradients"), ("optimizer", "optimizer")):
        assert one[key] / eight[key] == pytest.approx(sharding.shard_divisor(section, state))


def test_offloaded_states() -> None:
    assert sharding.offloaded_states(DistributedSection(strategy="fsdp", offload_params=True)) == {
        "weights", "gradients", "optimizer"}
    assert sharding.offloaded_states(DistributedSection(strategy="zero3", offload_optimizer=True)) == {
        "optimizer"}


# -- cross-checks before weights load ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "message"), [
    ("model: {device_map: auto}\ndistributed: {strategy: ddp}", "model.device_map", "drop model.device_map"),
    ("train: {precision: fp32}\ndistributed: {strategy: ddp, mixed_precision: bf16}",
     "distributed.mixed_precision", "contradicts train.precision"),
    ("train: {gradient_checkpointing: true}\ndistributed: {strategy: fsdp, activation_checkpointing: true}",
     "distributed.activation_checkpointing", "choose one"),
    ("train: {optimizer: adamw-8bit}\ndistributed: {strategy: zero3, offload_optimizer: true}",
     "distributed.offload_optimizer", "DeepSpeed's own CPU AdamW"),
    ("adapter: {method: lora-fa}\ndistributed: {strategy: zero2, offload_optimizer: true}",
     "distributed.offload_optimizer", "custom optimizer"),
    ("quantizer: {method: test-bnb8}\ndistributed: {strategy: fsdp}", "distributed.strategy",
     "8-bit bitsandbytes weights cannot be sharded by FSDP"),
    ("quantizer: {method: test-bnb8}\ndistributed: {strategy: zero3}", "distributed.strategy",
     "DeepSpeed ZeRO-3"),
    ("quantizer: {method: test-bnb4}\ndistributed: {strategy: fsdp}", "quantizer.quant_storage",
     "set quantizer.quant_storage: bfloat16"),
    ("quantizer: {method: test-bnb4, quant_storage: float16}\ndistributed: {strategy: zero3}",
     "quantizer.quant_storage", "got float16"),
    ("model: {dtype: float32}\nquantizer: {method: test-bnb4, quant_storage: bfloat16}\n"
     "distributed: {strategy: fsdp}", "model.dtype", "must equal quantizer.quant_storage"),
])
def test_refused_before_weights_load(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as info:
        resolve(tmp_path, text)
    assert info.value.key == key


@pytest.mark.parametrize("text", [
    "quantizer: {method: test-bnb4, quant_storage: bfloat16}\ndistributed: {strategy: fsdp}",
    "quantizer: {method: test-bnb4, quant_storage: bfloat16}\ndistributed: {strategy: zero3}",
    "quantizer: {method: test-bnb8}\ndistributed: {strategy: ddp}",
    "quantizer: {method: test-bnb8}\ndistributed: {strategy: zero2}",
    "quantizer: {method: test-bnb4, compute_dtype: float16, quant_storage: float16}\n"
    "distributed: {strategy: fsdp, mixed_precision: fp16}",
    "train: {gradient_checkpointing: true}\ndistributed: {strategy: fsdp}",
    "distributed: {strategy: zero3, offload_optimizer: true, offload_params: true}",
])
def test_workable_combinations_pass(tmp_path: Path, text: str) -> None:
    resolve(tmp_path, text)


def test_real_bnb_plugins_are_recognised_when_installed(tmp_path: Path) -> None:
    """The built-in nf4/int8 plugins (tunekit_bnb) are refused/accepted by the same rules."""
    registry = load_registry()
    names = registry.of("quantizer")
    if "int8" not in names or "nf4" not in names:
        pytest.skip("tunekit_bnb's nf4/int8 are not registered in this checkout yet")
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "quantizer: {method: int8}\ndistributed: {strategy: fsdp}")
    with pytest.raises(RecipeError, match="8-bit"):
        load_recipe(path, registry=registry)
    path.write_text(BASE + "quantizer: {method: nf4}\ndistributed: {strategy: fsdp}")
    with pytest.raises(RecipeError, match="quant_storage"):
        load_recipe(path, registry=registry)
    path.write_text(BASE + "quantizer: {method: nf4, quant_storage: bfloat16}\ndistributed: {strategy: fsdp}")
    load_recipe(path, registry=registry)
    path.write_text(BASE + "quantizer: {method: int8}\ndistributed: {strategy: ddp}")
    load_recipe(path, registry=registry)


# -- this process ------------------------------------------------------------------------------------


def _launched(monkeypatch: pytest.MonkeyPatch, rank: int = 1, world: int = 2, **extra: str) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED",
                 "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_process_info_reads_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    _launched(monkeypatch, rank=1, world=2)
    info = distributed.process_info()
    assert (info.world_size, info.rank, info.local_rank, info.is_main, info.launched) == (2, 1, 1, False, True)
    assert not distributed.is_main_process()
    lines: list[str] = []
    distributed.main_only_log(lines.append)("hello")
    assert lines == []
    monkeypatch.setenv("RANK", "0")
    distributed.main_only_log(lines.append)("hello")
    assert lines == ["hello"]


def test_record_writes_the_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    _launched(monkeypatch, rank=0, world=2)
    data = distributed.record(distributed.process_info(), {"distributed": {"strategy": "ddp"}, "name": "x"})
    assert data["distributed"] == {"strategy": "ddp", "world_size": 2}


def test_prepare_single_process_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    recipe = resolve(tmp_path, "").recipe
    assert distributed.prepare_process(recipe, cuda_available=False).world_size == 1


@pytest.mark.parametrize(("text", "env", "message"), [
    ("", {}, "distributed.strategy is none"),
    ("distributed: {strategy: fsdp}", {}, "needs a launcher that configures FSDP"),
    ("distributed: {strategy: fsdp}", {"ACCELERATE_USE_FSDP": "true"}, "needs GPUs"),
])
def test_prepare_refuses_a_launch_that_would_not_do_what_the_recipe_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], message: str) -> None:
    recipe = resolve(tmp_path, text).recipe
    _launched(monkeypatch, **env)
    with pytest.raises(UsageError, match=message):
        distributed.prepare_process(recipe, cuda_available=False)


def test_prepare_ddp_on_cpu_uses_gloo_and_cleans_up_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = resolve(tmp_path, "distributed: {strategy: ddp, gpus: 2}").recipe
    _launched(monkeypatch)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        info = distributed.prepare_process(recipe, cuda_available=False)
        assert info.world_size == 2
        import os

        assert os.environ["ACCELERATE_USE_CPU"] == "true"
        with pytest.raises(KeyboardInterrupt, match="another rank failed"):
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_zero_needs_deepspeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    recipe = resolve(tmp_path, "distributed: {strategy: zero3}").recipe
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunekit\[deepspeed\]'"):
        distributed.prepare_process(recipe, cuda_available=True)
    distributed.check_deepspeed("fsdp")  # nothing needed for the others


# -- several real processes (CPU, gloo) ---------------------------------------------------------------
# `tunekit launch --cpu` runs DDP through accelerate's torchrun launcher with ACCELERATE_USE_CPU=true; the
# literal `accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (its CPU
# launcher needs mpirun), see docs/distributed.md. FSDP/ZeRO need GPUs through accelerate (same doc).

STEPS = 5
MULTI_RECIPE = f"""
name: tiny-ddp
adapter: {{method: lora, r: 4, dropout: 0.0}}
train: {{seq_len: 64, batch_size: 2, grad_accum: 1, max_steps: {STEPS}, lr: 3.0e-3, scheduler: constant,
         eval_split: 0.0, max_samples: 40, seed: 0}}
eval: {{perplexity: false}}
distributed: {{strategy: ddp, gpus: 2}}
"""

BOOM_PLUGIN = '''
"""A third-party plugin for the failure test: LoRA whose rank 1 raises in its 3rd forward (mid-training),
and an observer that records which stage each rank left with an exception."""
import os
from pathlib import Path

from tunekit import hookimpl
from tunekit_peft import Lora


class BoomLora(Lora):
    name = "boom-lora"

    def apply(self, model, ctx):
        model = super().apply(model, ctx)
        if os.environ.get("RANK") == "1":
            calls = [0]

            def hook(module, args):
                calls[0] += 1
                if calls[0] == 3:
                    raise RuntimeError("boom: rank 1 fails on purpose")

            model.register_forward_pre_hook(hook)
        return model


@hookimpl
def tunekit_adapters():
    return [BoomLora]


@hookimpl(wrapper=True)
def tunekit_run_stage(stage, plugin, model, ctx):
    try:
        return (yield)
    except BaseException as exc:
        report = Path(os.environ["BOOM_REPORT"]) / f"rank{os.environ.get('RANK')}-{stage}.txt"
        report.write_text(f"{type(exc).__name__}: {exc}")
        raise
'''


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from train_helpers import write_text_jsonl

    from tunekit.testing import save_tiny_model

    root = tmp_path_factory.mktemp("multi")
    model_dir = save_tiny_model(root / "model")
    recipe = root / "recipe.yaml"
    recipe.write_text(MULTI_RECIPE)
    return {"root": root, "model": model_dir, "data": write_text_jsonl(root / "train.jsonl", n=40), "recipe": recipe}


def _env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"}}
    return {**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def _tunekit(*args: str, env: dict[str, str] | None = None, timeout: int = 240) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tunekit", *args], env=env or _env(), capture_output=True,
                          text=True, timeout=timeout)


def _apply_args(multi: dict[str, Path], output: Path, *sets: str) -> list[str]:
    args = ["--model", str(multi["model"]), "--data", str(multi["data"]), "--output", str(output)]
    return args + [x for s in sets for x in ("--set", s)]


def _metrics(output: Path) -> dict[str, Any]:
    import json

    return json.loads((output / "metrics.json").read_text())


def _leftovers(root: Path, name: str) -> list[str]:
    """Everything beside the output that carries its name (temporary dirs), except the launch configs."""
    return sorted(p.name for p in root.iterdir() if name in p.name and p.name not in {name, f"{name}.launch"})


@pytest.fixture(scope="module")
def single_process_batch_4(multi: dict[str, Path]) -> dict[str, Any]:
    """The metrics of one process with the global batch of the two-process runs (2 x 2)."""
    out = multi["root"] / "single"
    run = _tunekit("apply", str(multi["recipe"]), *_apply_args(multi, out, "distributed.strategy=none",
                                                               "train.batch_size=4"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return _metrics(out)


@pytest.mark.slow
def test_ddp_two_processes_train_like_one_with_the_same_global_batch(
        multi: dict[str, Path], single_process_batch_4: dict[str, Any]) -> None:
    import math

    import yaml

    root = multi["root"]
    ddp_out = root / "ddp"
    launched = _tunekit("launch", str(multi["recipe"]), "--cpu", "--", *_apply_args(multi, ddp_out))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "ACCELERATE_USE_CPU=true " in launched.stdout and " launch --config_file " in launched.stdout

    # exactly one output, nothing half-written beside it
    assert ddp_out.is_dir() and _leftovers(root, "ddp") == []
    recorded = yaml.safe_load((ddp_out / "tunekit-recipe.yaml").read_text())
    assert recorded["distributed"]["strategy"] == "ddp" and recorded["distributed"]["world_size"] == 2

    ddp = _metrics(ddp_out)["train"]
    losses = [loss for _, loss in ddp["loss_curve"]]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # both ranks took part: the Trainer counts tokens over all processes, 2 ranks x batch 2 x 64 per step
    assert ddp["tokens_seen"] == STEPS * 2 * 2 * 64

    # one process with the same global batch (4): the same batches in the same order, the same curve
    single = single_process_batch_4["train"]
    assert single["tokens_seen"] == ddp["tokens_seen"]
    # the adapter starts from the recipe's seed on every rank, so only gloo's summation order differs
    for (_, got), (_, want) in zip(ddp["loss_curve"], single["loss_curve"]):
        assert got == pytest.approx(want, rel=1e-4)

    # the adapter reloads in PEFT and carries what training changed
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir = next(ddp_out.rglob("adapter_config.json")).parent
    base = AutoModelForCausalLM.from_pretrained(multi["model"])
    model = PeftModel.from_pretrained(base, adapter_dir)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b)  # B starts at zero in LoRA
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[3, 4, 5, 6]])).logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_a_users_own_launcher_runs_apply_and_trains_like_one_process(
        multi: dict[str, Path], single_process_batch_4: dict[str, Any], launcher: str) -> None:
    """No `tunekit launch` at run time: plain torchrun, or the `accelerate launch` line --dry-run printed,
    starts two `tunekit apply` processes."""
    import shutil
    import sys

    root = multi["root"]
    out = root / launcher
    if launcher == "torchrun":
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        argv = [torchrun, "--nproc-per-node", "2", "-m", "tunekit", "apply", str(multi["recipe"]),
                *_apply_args(multi, out), "--quiet"]
        env = _env()
    else:
        argv, env = _printed_launch_line(multi, out, _env())
    run = subprocess_run(argv, env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert out.is_dir() and _leftovers(root, launcher) == []
    import yaml

    assert yaml.safe_load((out / "tunekit-recipe.yaml").read_text())["distributed"]["world_size"] == 2
    train = _metrics(out)["train"]
    assert train["tokens_seen"] == STEPS * 2 * 2 * 64
    # the recipe seeds the adapter: two processes of batch 2 follow one process of batch 4 step by step
    for (_, got), (_, want) in zip(train["loss_curve"], single_process_batch_4["train"]["loss_curve"]):
        assert got == pytest.approx(want, rel=1e-4)


def _printed_launch_line(multi: dict[str, Path], out: Path, env: dict[str, str],
                         *sets: str) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch ...` line `tunekit launch --cpu --dry-run` prints, as argv and environment."""
    import shlex

    printed = _tunekit("launch", str(multi["recipe"]), "--cpu", "--dry-run", "--", *_apply_args(multi, out, *sets),
                       env=env)
    assert printed.returncode == 0, printed.stderr
    assignments, argv = [], shlex.split(printed.stdout.strip().splitlines()[-1])
    while "=" in argv[0] and not argv[0].startswith("/"):
        assignments.append(argv.pop(0))
    assert assignments == ["ACCELERATE_USE_CPU=true"] and argv[1] == "launch"
    return argv, {**env, **dict(a.split("=", 1) for a in assignments)}


def subprocess_run(argv: list[str], env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_rank_that_raises_leaves_no_output_and_fails_the_launch(multi: dict[str, Path], tmp_path: Path) -> None:
    """A plain `accelerate launch` line (printed by --dry-run) with a third-party plugin that fails on rank 1."""

    site = tmp_path / "site"
    (site / "boom_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "boom_plugin.py").write_text(BOOM_PLUGIN)
    (site / "boom_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-plugin\n"
                                                                 "Version: 0.1\n")
    (site / "boom_plugin-0.1.dist-info" / "entry_points.txt").write_text("[tunekit]\nboom = boom_plugin\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    import os

    env = _env(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), BOOM_REPORT=str(reports))

    root = multi["root"]
    out = root / "boom"
    argv, launch_env = _printed_launch_line(multi, out, env, "adapter.method=boom-lora")
    run = subprocess_run(argv, launch_env)
    assert run.returncode != 0
    assert "boom: rank 1 fails on purpose" in run.stdout + run.stderr
    assert not out.exists() and _leftovers(root, "boom") == []
    # rank 0 did not finish quietly: it left its train stage with an exception (not a success, not a hang)
    assert (reports / "rank1-train.txt").read_text().startswith("RuntimeError: boom")
    assert (reports / "rank0-train.txt").exists(), sorted(p.name for p in reports.iterdir())


@pytest.mark.slow
def test_full_finetune_under_a_two_process_launch_trains_like_one_process(multi: dict[str, Path]) -> None:
    """No adapter: DDP over gloo trains the selected weights of the model itself, rank 0 writes a plain model."""
    import torch
    from transformers import AutoModelForCausalLM

    root = multi["root"]
    full = ("adapter=null", "train.trainable=['layers\\.1\\.', 'lm_head']")
    single_out, ddp_out = root / "full-single", root / "full-ddp"
    single = _tunekit("apply", str(multi["recipe"]), *_apply_args(multi, single_out, "distributed.strategy=none",
                                                                   "train.batch_size=4", *full))
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    launched = _tunekit("launch", str(multi["recipe"]), "--cpu", "--", *_apply_args(multi, ddp_out, *full))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert _leftovers(root, "full-ddp") == []

    ddp, one = _metrics(ddp_out)["train"], _metrics(single_out)["train"]
    assert ddp["full_finetune"] is True and ddp["tokens_seen"] == STEPS * 2 * 2 * 64
    for (_, got), (_, want) in zip(ddp["loss_curve"], one["loss_curve"]):
        assert got == pytest.approx(want, rel=1e-4)

    base = AutoModelForCausalLM.from_pretrained(multi["model"]).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(ddp_out).state_dict()
    reference = AutoModelForCausalLM.from_pretrained(single_out).state_dict()
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed == {k for k in base if k.startswith(("model.layers.1.", "lm_head."))}
    for key in changed:  # the two runs reached the same weights
        torch.testing.assert_close(trained[key], reference[key], rtol=1e-3, atol=1e-5)
