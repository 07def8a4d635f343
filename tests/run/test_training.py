"""Training data shapes, the Trainer wiring, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from train_helpers import INSTRUCT, write_text_jsonl
from tunekit_peft import Lora

from tunekit.core.context import RunState, StageContext
from tunekit.core.errors import UsageError
from tunekit.core.recipe_model import Recipe, TrainSection
from tunekit.run import train_data
from tunekit.run.training import precision_flags, train
from tunekit.testing import build_tiny_model, build_tokenizer

torch.set_num_threads(2)


def section(**fields: Any) -> TrainSection:
    return TrainSection(**fields)


# -- data ----------------------------------------------------------------------------------


def test_text_is_packed_into_full_blocks(tmp_path: Path) -> None:
    path = write_text_jsonl(tmp_path / "t.jsonl", 10)
    data = train_data.build(section(seq_len=32, eval_split=0.2), build_tokenizer(), path)
    stream = sum(len(build_tokenizer()(json.loads(x)["text"])["input_ids"]) + 1 for x in path.read_text().splitlines())
    total = len(data.train) + len(data.eval)
    assert total == stream // 32 and data.kind == "text"
    assert all(len(e["input_ids"]) == 32 and e["labels"] == e["input_ids"] for e in data.train + data.eval)
    assert len(data.eval) == round(total * 0.2)


def test_unpacked_text_keeps_one_example_per_document(tmp_path: Path) -> None:
    path = write_text_jsonl(tmp_path / "t.jsonl", 5)
    data = train_data.build(section(seq_len=16, packing=False, eval_split=0), build_tokenizer(), path)
    assert len(data.train) == 5 and all(len(e["input_ids"]) <= 16 for e in data.train)


def test_text_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("It is a truth universally acknowledged. " * 20)
    (tmp_path / "b.txt").write_text("Emma Woodhouse, handsome, clever, and rich. " * 20)
    folder = train_data.build(section(seq_len=16, eval_split=0), build_tokenizer(), tmp_path)
    single = train_data.build(section(seq_len=16, eval_split=0), build_tokenizer(), tmp_path / "a.txt")
    assert len(folder.train) > len(single.train) > 0


def test_instruction_loss_is_on_the_completion_only() -> None:
    tok = build_tokenizer()
    record = json.loads(INSTRUCT.read_text().splitlines()[0])
    example = train_data.instruction_example(record, section(seq_len=512), tok)
    prompt = train_data.render_prompt(record, None, False, tok)
    n_prompt = 1 + len(tok(prompt, add_special_tokens=False)["input_ids"])  # + BOS
    assert example["labels"][:n_prompt] == [-100] * n_prompt
    assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
    assert example["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(example["input_ids"][n_prompt:-1]).strip() == record["output"]
    full = train_data.instruction_example(record, section(seq_len=512, completion_only=False), tok)
    assert full["labels"] == full["input_ids"]


def test_templates_and_chat_templates() -> None:
    tok = build_tokenizer()
    record = {"instruction": "Summarise", "input": "a long text", "output": "short"}
    assert train_data.render_prompt(record, "Q: {instruction} [{input}]\nA:", False, tok) == \
        "Q: Summarise [a long text]\nA:"
    assert "### Input:\na long text" in train_data.render_prompt(record, None, False, tok)
    assert "### Input" not in train_data.render_prompt({**record, "input": ""}, None, False, tok)
    with pytest.raises(UsageError, match="chat template"):
        train_data.render_prompt(record, None, True, tok)
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    try:
        assert train_data.render_prompt(record, None, True, tok) == "<user>Summarise\n\na long text<assistant>"
    finally:
        tok.chat_template = None
    with pytest.raises(UsageError, match="cannot fill"):
        train_data.render_prompt(record, "{missing}", False, tok)


@pytest.mark.parametrize(("content", "match"), [
    ('{"text": "a"}\n{"instruction": "b", "output": "c"}\n', "mixes"),
    ('{"text": "a"}\nnot json\n', ":2: not a JSON line"),
    ('{"prompt": "a"}\n', "expected an object"),
    ("\n", "no records"),
])
def test_bad_data_files_say_where(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=match):
        train_data.build(section(), build_tokenizer(), path)


def test_prompts_longer_than_seq_len_are_refused() -> None:
    with pytest.raises(UsageError, match="raise seq_len"):
        train_data.build(section(seq_len=8, max_samples=3), build_tokenizer(), INSTRUCT)


def test_max_samples_and_a_seeded_split() -> None:
    a = train_data.build(section(seq_len=512, max_samples=20, eval_split=0.25, seed=1), build_tokenizer(), INSTRUCT)
    b = train_data.build(section(seq_len=512, max_samples=20, eval_split=0.25, seed=1), build_tokenizer(), INSTRUCT)
    assert (len(a.train), len(a.eval)) == (15, 5) and a.eval == b.eval


def test_fp16_needs_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="fp16"):
        precision_flags(section(precision="fp16"))
    assert precision_flags(section()) == {"bf16": False, "fp16": False}


# -- training ------------------------------------------------------------------------------


def run(tmp_path: Path, data: Path, resume: bool | str = False, **train_fields: Any) -> StageContext:
    fields = {"seq_len": 64, "batch_size": 2, "max_steps": 6, "lr": 3e-3, "scheduler": "constant",
              "eval_split": 0.2, "max_samples": 30, **train_fields}
    ctx = StageContext(recipe=Recipe.model_validate({"train": fields}), tokenizer=build_tokenizer(), data_path=data,
                       output_dir=tmp_path, log=lambda _: None, run=RunState(resume=resume))
    plugin = Lora(Lora.Params(r=4))
    train(plugin.apply(build_tiny_model(), ctx), ctx, plugin)
    return ctx


def test_training_records_the_numbers_the_report_needs(tmp_path: Path) -> None:
    ctx = run(tmp_path, write_text_jsonl(tmp_path / "t.jsonl"), eval_steps=3)
    report = ctx.metrics["train"]
    assert [step for step, _ in report["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in report["eval_curve"]] == [3, 6]
    assert report["eval_loss"] == report["eval_curve"][-1][1]
    assert report["trainable_params"] == ctx.metrics["adapter"]["trainable_params"]
    assert report["tokens_seen"] == 6 * 2 * 64 and report["peak_memory_mb"] > 0 and report["time_s"] > 0
    assert not list(tmp_path.glob("checkpoints/checkpoint-*"))  # no save_steps, no checkpoints


def test_resume_continues_the_step_count_and_the_loss_curve(tmp_path: Path) -> None:
    data = write_text_jsonl(tmp_path / "t.jsonl")
    full = run(tmp_path / "full", data, save_steps=3).metrics["train"]
    checkpoint = tmp_path / "full" / "checkpoints" / "checkpoint-3"
    assert checkpoint.is_dir() and (tmp_path / "full" / "checkpoints" / "checkpoint-6").is_dir()
    resumed = run(tmp_path / "resumed", data, resume=str(checkpoint), save_steps=3).metrics["train"]
    assert resumed["steps"] == 6 and resumed["resumed_from"] == str(checkpoint)
    assert [s for s, _ in resumed["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert resumed["loss_curve"][:3] == full["loss_curve"][:3]  # restored from the checkpoint's state
    for (_, got), (_, want) in zip(resumed["loss_curve"][3:], full["loss_curve"][3:]):
        assert got == pytest.approx(want, rel=1e-3)  # same batches, same weights: the same curve
    latest = run(tmp_path / "full", data, resume=True, save_steps=3, max_steps=8).metrics["train"]
    assert latest["resumed_from"].endswith("checkpoint-6") and latest["steps"] == 8


def test_resume_without_a_checkpoint_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no checkpoint"):
        run(tmp_path, write_text_jsonl(tmp_path / "t.jsonl"), resume=True)


def test_training_needs_data(tmp_path: Path) -> None:
    ctx = StageContext(recipe=Recipe.model_validate({"train": {}}), tokenizer=build_tokenizer(), output_dir=tmp_path)
    with pytest.raises(UsageError, match="--data"):
        train(build_tiny_model(), ctx)


@pytest.mark.slow
def test_qlora_recipe_lowers_held_out_perplexity_of_smollm2(tmp_path: Path) -> None:
    """The shipped QLoRA recipe, shortened: NF4 SmolLM2-135M through the nf4 plugin, LoRA, a few steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.arch import ModelArch
    from tunekit.core.recipe import load_recipe

    fixtures = pytest.importorskip("tunekit.core.fixtures", reason="the SmolLM2 fixture comes with the pipeline")
    path = fixtures.smollm2_path()
    resolved = load_recipe("qlora-smollm2", overrides=["train.max_steps=4", "train.seq_len=128",
                                                       "train.max_samples=48", "train.eval_steps=null"])
    quantizer, adapter = resolved.stages["quantizer"], resolved.stages["adapter"]
    ctx = StageContext(recipe=resolved.recipe, arch=ModelArch.from_path(path), output_dir=tmp_path,
                       tokenizer=AutoTokenizer.from_pretrained(path), log=lambda _: None)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **quantizer.load_kwargs(ctx))
    model = adapter.apply(quantizer.apply(base, ctx), ctx)
    train(model, ctx, adapter)
    report = ctx.metrics["train"]
    assert ctx.metrics["adapter"]["qlora"] is True and report["steps"] == 4
    assert report["eval_perplexity"] < report["eval_perplexity_before"]
