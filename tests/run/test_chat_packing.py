"""Chat JSONL through the chat template (loss on assistant turns only) and packed instruction data whose
attention stays inside each example."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tunekit_peft import Lora

from tunekit.core.context import StageContext
from tunekit.core.errors import UsageError
from tunekit.core.recipe_model import Recipe, TrainSection
from tunekit.run import train_data
from tunekit.run.train_progress import collate
from tunekit.run.training import train
from tunekit.testing import build_tiny_model, build_tokenizer

torch.set_num_threads(2)

#: ChatML, the shape of SmolLM2's and Qwen's templates: each turn ends in a marker the model must learn.
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CHAT = {"messages": [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Who wrote Emma?"},
    {"role": "assistant", "content": "Jane Austen."},
    {"role": "user", "content": "And Persuasion?"},
    {"role": "assistant", "content": "Also Austen."},
]}


@pytest.fixture
def chat_tokenizer() -> Iterator[Any]:
    tok = build_tokenizer()
    tok.chat_template = CHATML
    try:
        yield tok
    finally:
        tok.chat_template = None


def labelled_text(tok: Any, example: dict[str, list[int]]) -> list[str]:
    """The runs of tokens that carry a label, decoded."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(example["input_ids"], example["labels"]):
        if label != train_data.IGNORE_INDEX:
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != train_data.IGNORE_INDEX
    return [tok.decode(run) for run in runs]


def test_chat_loss_is_on_the_assistant_turns_only(chat_tokenizer: Any) -> None:
    example = train_data.chat_example(CHAT, TrainSection(seq_len=512), chat_tokenizer)
    assert chat_tokenizer.decode(example["input_ids"]) == chat_tokenizer.apply_chat_template(
        CHAT["messages"], tokenize=False)
    assert labelled_text(chat_tokenizer, example) == ["Jane Austen.<|im_end|>\n", "Also Austen.<|im_end|>\n"]
    everything = train_data.chat_example(CHAT, TrainSection(seq_len=512, completion_only=False), chat_tokenizer)
    assert everything["labels"] == everything["input_ids"]


def test_sharegpt_conversations_read_as_messages(tmp_path: Path) -> None:
    turns = [{"from": "human", "value": "Who wrote Emma?"}, {"from": "gpt", "value": "Jane Austen."}]
    path = tmp_path / "share.jsonl"
    path.write_text(json.dumps({"conversations": turns}) + "\n")
    assert train_data.read_records(path) == [{"messages": [
        {"role": "user", "content": "Who wrote Emma?"}, {"role": "assistant", "content": "Jane Austen."}]}]


@pytest.mark.parametrize(("record", "match"), [
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"messages": [{"role": "assistant", "content": None}]}, r"messages\[0\]: 'content' must be a string"),
    ({"messages": ["hi"]}, r"messages\[0\]: expected an object"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, r"needs 'from' \(one of human"),
])
def test_bad_chat_records_say_where(tmp_path: Path, record: dict[str, Any], match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(UsageError, match=f"bad.jsonl:1: .*{match}"):
        train_data.read_records(path)


def test_chat_records_need_a_chat_template_that_extends_itself(tmp_path: Path, chat_tokenizer: Any) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(CHAT) + "\n" + json.dumps({"text": "plain"}) + "\n")
    with pytest.raises(UsageError, match="mixes chat and text records"):
        train_data.build(TrainSection(), chat_tokenizer, path)
    # a template that rewrites earlier turns once later ones follow (here: only the last turn is shown)
    chat_tokenizer.chat_template = "{{ messages[-1].content }}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(UsageError, match="renders earlier turns differently"):
        train_data.chat_example(CHAT, TrainSection(), chat_tokenizer)
    chat_tokenizer.chat_template = None
    with pytest.raises(UsageError, match="need a tokenizer with a chat template"):
        train_data.chat_example(CHAT, TrainSection(), chat_tokenizer)


def example(ids: list[int], prompt: int) -> dict[str, list[int]]:
    return {"input_ids": ids, "labels": [train_data.IGNORE_INDEX] * prompt + ids[prompt:]}


def test_packing_restarts_positions_and_never_predicts_across_examples() -> None:
    a, b, c = example([5, 6, 7, 8], 0), example([9, 10, 11], 1), example([12, 13, 14, 15, 16], 2)
    rows = train_data.pack_examples([a, b, c], seq_len=8)
    assert [r["input_ids"] for r in rows] == [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16]]
    assert rows[0]["position_ids"] == [0, 1, 2, 3, 0, 1, 2]
    assert rows[0]["labels"] == [5, 6, 7, 8, -100, 10, 11]  # 9 is the prompt: never predicted from 8
    assert rows[1]["labels"] == c["labels"] and rows[1]["position_ids"] == [0, 1, 2, 3, 4]
    batch = collate(rows, pad_id=2)
    assert "attention_mask" not in batch and batch["use_cache"] is False
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 4, 0, 1]  # padding is a sequence of its own
    assert batch["labels"][1].tolist()[-2:] == [-100, -100]


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_logits_equal_each_example_alone(attention: str) -> None:
    """The attention really stays inside an example: the packed row's logits for each example equal that
    example's logits on its own; the same row without position ids (one long sequence) does not."""
    model = build_tiny_model()
    model.config._attn_implementation = attention
    model.eval()
    first = example(list(range(10, 30)), 0)
    second = example(list(range(40, 53)), 0)
    batch = collate(train_data.pack_examples([first, second], seq_len=64), pad_id=2)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone = [model(input_ids=torch.tensor([e["input_ids"]])).logits for e in (first, second)]
        joined = model(input_ids=batch["input_ids"]).logits
    torch.testing.assert_close(packed[:, :20], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[:, 20:], alone[1], atol=1e-5, rtol=1e-4)
    assert (joined[:, 20:] - alone[1]).abs().max() > 1e-2  # the test can fail: unpacked, B sees A


def test_training_on_packed_chat_data_moves_the_adapter(tmp_path: Path, chat_tokenizer: Any) -> None:
    rows = [{"messages": [{"role": "user", "content": f"Name novel {i}."},
                          {"role": "assistant", "content": title}]}
            for i, title in enumerate(["Emma", "Persuasion", "Sense and Sensibility", "Mansfield Park"] * 4)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = Recipe.model_validate({"train": {"seq_len": 128, "pack_examples": True, "max_steps": 3, "lr": 3e-3,
                                              "eval_split": 0.25, "batch_size": 2}})
    ctx = StageContext(recipe=recipe, tokenizer=chat_tokenizer, data_path=path, output_dir=tmp_path,
                       log=lambda _: None)
    plugin = Lora(Lora.Params(r=4))
    model = train(plugin.apply(build_tiny_model(), ctx), ctx, plugin)
    report = ctx.metrics["train"]
    assert report["examples"] == 12 and report["packed_rows"] < 12  # 12 training chats packed into fewer rows
    assert report["tokens_seen"] > 0
    assert report["held_out"] == 4 and report["eval_loss"] is not None
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
