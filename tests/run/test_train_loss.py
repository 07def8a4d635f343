"""train.chunked_loss and train.activation_offload: the same loss and gradients, the same learning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from train_helpers import write_text_jsonl
from tunekit_peft import Lora

from tunekit.core.context import RunState, StageContext
from tunekit.core.errors import UsageError
from tunekit.core.recipe_model import Recipe
from tunekit.run import train_loss
from tunekit.run.train_loss import chunked_causal_lm_loss, decoder_and_head, hidden_and_head
from tunekit.run.training import train
from tunekit.testing import build_tiny_model, build_tokenizer

torch.set_num_threads(2)


def batch() -> dict[str, Any]:
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, 40))
    labels = ids.clone()
    labels[0, :7] = -100  # a prompt the loss skips, as instruction data has
    labels[1, 30:] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def grads(model: Any) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return out


@pytest.mark.parametrize("num_items", [None, 50])
def test_chunked_loss_equals_the_standard_loss_and_gradients(num_items: int | None) -> None:
    model = build_tiny_model().train()
    inputs = batch()
    extra = {"num_items_in_batch": torch.tensor(num_items)} if num_items else {}
    standard = model(**inputs, **extra).loss
    standard.backward()
    want = grads(model)
    hidden, head, _ = hidden_and_head(model, inputs)
    chunked = chunked_causal_lm_loss(hidden, head, inputs["labels"], extra.get("num_items_in_batch"), chunk=16)
    chunked.backward()
    got = grads(model)
    assert chunked.item() == pytest.approx(standard.item(), abs=1e-5)
    assert got.keys() == want.keys() and "lm_head.weight" in got
    for name, grad in want.items():
        assert torch.allclose(got[name], grad, atol=1e-5), name


def test_chunked_loss_never_holds_the_full_logits() -> None:
    """Backward recomputes each chunk: what autograd keeps is the hidden states, no tokens x vocab tensor."""
    model = build_tiny_model(vocab_size=640).train()  # a width no other tensor has
    inputs = batch()
    vocab, tokens = model.config.vocab_size, inputs["input_ids"].numel()
    kept: list[tuple[int, ...]] = []

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in weights:  # activations only, not (transposed) weights
            kept.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden, head, _ = hidden_and_head(model, inputs)
        chunked_causal_lm_loss(hidden, head, inputs["labels"], chunk=16)
    assert kept and all(vocab not in shape[-1:] for shape in kept)
    kept.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**inputs)
    assert any(shape[-1] == vocab and torch.Size(shape).numel() == tokens * vocab for shape in kept)


def test_chunked_loss_sees_through_the_peft_wrapper() -> None:
    plugin = Lora(Lora.Params(r=4))
    ctx = StageContext(recipe=Recipe(), tokenizer=build_tokenizer(), log=lambda _: None)
    base = build_tiny_model()
    peft = plugin.apply(base, ctx)
    decoder, head, _ = decoder_and_head(peft)
    assert decoder is base.model and head is base.lm_head
    with pytest.raises(UsageError, match="chunked_loss"):
        decoder_and_head(torch.nn.Linear(2, 2))


def run(tmp_path: Path, **train_fields: Any) -> dict[str, Any]:
    tmp_path.mkdir()
    fields = {"seq_len": 64, "batch_size": 2, "max_steps": 8, "lr": 3e-3, "scheduler": "constant",
              "eval_split": 0.2, "max_samples": 30, "gradient_checkpointing": True, **train_fields}
    ctx = StageContext(recipe=Recipe.model_validate({"train": fields}), tokenizer=build_tokenizer(),
                       data_path=write_text_jsonl(tmp_path / "t.jsonl"), output_dir=tmp_path, log=lambda _: None,
                       run=RunState())
    plugin = Lora(Lora.Params(r=4))
    train(plugin.apply(build_tiny_model(), ctx), ctx, plugin)
    return ctx.metrics["train"]


def test_training_with_each_option_learns_like_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"chunked_loss": 0, "activation_offload": 0}

    def spy(option: str, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[option] += 1
            return real(*args, **kwargs)
        return counted

    monkeypatch.setattr(train_loss, "chunked_causal_lm_loss", spy("chunked_loss", chunked_causal_lm_loss))
    graph = torch.autograd.graph
    monkeypatch.setattr(graph, "save_on_cpu", spy("activation_offload", graph.save_on_cpu))
    plain = run(tmp_path / "plain")
    assert plain["eval_loss"] < plain["eval_loss_before"]
    assert calls == {"chunked_loss": 0, "activation_offload": 0}
    for option in ("chunked_loss", "activation_offload"):
        got = run(tmp_path / option, **{option: True})
        assert got[option] is True and calls[option] >= got["steps"]  # the option ran in every training step
        assert got["eval_loss_before"] == pytest.approx(plain["eval_loss_before"], abs=1e-4)
        # same data, same seed, the same arithmetic up to summation order: the same curve
        for (_, loss), (_, want) in zip(got["loss_curve"], plain["loss_curve"]):
            assert loss == pytest.approx(want, rel=1e-3)
        assert got["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-3)
