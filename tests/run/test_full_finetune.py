"""Full fine-tuning (a recipe with ``train`` and no adapter) on a tiny Llama through ``apply``: the loss
goes down, the selected weights change and no other does, and the output is a plain from_pretrained folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from train_helpers import write_text_jsonl

from tunekit.core.errors import UsageError
from tunekit.run.pipeline import apply_recipe

torch.set_num_threads(2)

TRAIN = {"seq_len": 64, "batch_size": 2, "max_steps": 6, "lr": 3e-3, "scheduler": "constant",
         "eval_split": 0.2, "max_samples": 30, "seed": 0}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_tiny_model(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", n=40)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_pretrained(folder).state_dict().items()}


def finetune(tiny_dir: Path, data: Path, out: Path, **train: Any) -> dict[str, Any]:
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(yaml.safe_dump({"name": "full", "train": {**TRAIN, **train},
                                      "eval": {"perplexity": False}}))
    apply_recipe(recipe, model=tiny_dir, data=data, output=out, quiet=True)
    return json.loads((out / "metrics.json").read_text())


def test_every_weight_trains_and_the_output_is_a_plain_model(tiny_dir: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = finetune(tiny_dir, data, out, eval_steps=3)
    report = metrics["train"]
    assert report["full_finetune"] is True and report["steps"] == 6
    assert report["trainable_params"] == metrics["load"]["params"]
    assert report["eval_loss"] < report["eval_loss_before"]
    losses = [loss for _, loss in report["loss_curve"]]
    assert losses[-1] < losses[0]
    # a plain from_pretrained folder: no adapter files, every tensor there and every one changed
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    before, after = weights(tiny_dir), weights(out)
    assert before.keys() == after.keys()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == []
    assert yaml.safe_load((out / "tunekit-recipe.yaml").read_text())["adapter"] is None


def test_trainable_patterns_train_only_the_matching_weights(tiny_dir: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = finetune(tiny_dir, data, out, trainable=[r"layers\.1\.", r"^model\.norm\."])
    before, after = weights(tiny_dir), weights(out)
    selected = {k for k in before if k.startswith(("model.layers.1.", "model.norm."))}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert selected and changed == selected
    assert metrics["train"]["trainable_params"] == sum(before[k].numel() for k in selected)


def test_a_pattern_that_matches_nothing_is_refused(tiny_dir: Path, data: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"matches no parameter .*names look like: model\.embed_tokens"):
        finetune(tiny_dir, data, tmp_path / "out", trainable=["decoder\\.blocks"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw-8bit", "paged-adamw-8bit"])
def test_every_optimizer_the_estimator_knows_trains(tiny_dir: Path, data: Path, tmp_path: Path,
                                                    optimizer: str) -> None:
    lr = 0.5 if optimizer == "sgd" else 3e-3
    report = finetune(tiny_dir, data, tmp_path / "out", optimizer=optimizer, lr=lr, eval_steps=6)["train"]
    assert report["eval_loss"] < report["eval_loss_before"], report


def test_recipe_optimizers_are_the_estimators() -> None:
    from tunekit.advise.estimate import OPTIMIZERS as ESTIMATED
    from tunekit.core.recipe_model import TrainSection
    from tunekit.run.training import OPTIMIZERS

    field = TrainSection.model_fields["optimizer"].annotation
    assert set(OPTIMIZERS) == set(ESTIMATED) == set(field.__args__)  # type: ignore[union-attr]


def test_gradient_checkpointing_recomputes_the_same_steps(tiny_dir: Path, data: Path, tmp_path: Path) -> None:
    plain = finetune(tiny_dir, data, tmp_path / "plain", max_steps=3)["train"]["loss_curve"]
    checkpointed = finetune(tiny_dir, data, tmp_path / "ckpt", max_steps=3, gradient_checkpointing=True)
    for (_, got), (_, want) in zip(checkpointed["train"]["loss_curve"], plain):
        assert got == pytest.approx(want, rel=1e-4)


def test_bf16_mixed_precision_trains_fp32_weights(tiny_dir: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = finetune(tiny_dir, data, out, precision="bf16", eval_steps=6)["train"]
    assert report["eval_loss"] < report["eval_loss_before"]
    after = weights(out)
    assert all(t.dtype == torch.float32 for t in after.values())  # autocast: the master weights stay fp32




def test_the_shipped_full_finetune_recipe_runs(tiny_dir: Path, tmp_path: Path) -> None:
    """recipes/full-finetune-smollm2.yaml as shipped (shortened), on the tiny model: its data, optimizer and
    gradient checkpointing work together and every weight of the written model changed."""
    out = tmp_path / "out"
    result = apply_recipe("full-finetune-smollm2", model=tiny_dir, output=out, quiet=True,
                          overrides=["train.max_steps=3", "train.max_samples=24", "train.eval_steps=null",
                                     "eval.seq_len=64", "eval.max_tokens=256"])
    report = result.metrics["train"]
    assert report["full_finetune"] is True and report["steps"] == 3
    assert report["trainable_params"] == result.metrics["load"]["params"]
    before, after = weights(tiny_dir), weights(out)
    assert [k for k in before if torch.equal(before[k], after[k])] == []


@pytest.mark.slow
def test_the_shipped_full_finetune_recipe_lowers_smollm2_held_out_loss(tmp_path: Path) -> None:
    pytest.importorskip("tunekit.core.fixtures").smollm2_path()
    result = apply_recipe("full-finetune-smollm2", output=tmp_path / "out", quiet=True,
                          overrides=["train.max_steps=4", "train.seq_len=128", "train.max_samples=48",
                                     "train.eval_steps=null", "eval.perplexity=false"])
    report = result.metrics["train"]
    assert report["eval_loss"] < report["eval_loss_before"]
    assert report["trainable_params"] == result.metrics["load"]["params"]
