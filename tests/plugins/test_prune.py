"""Magnitude pruning: the smallest weights go, per layer / globally / 2:4, permanently, with the warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from tunekit_prune import MagnitudeParams, MagnitudePruner

from tunekit.core.context import StageContext
from tunekit.core.errors import TunekitError, UsageError
from tunekit.core.recipe_model import Recipe

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny() -> Any:
    from tunekit.testing import build_tiny_model

    return build_tiny_model(hidden_size=128, intermediate_size=256, max_position_embeddings=64)


def ctx() -> StageContext:
    return StageContext(recipe=Recipe.model_validate({}), log=lambda _m: None)


def linears(model: Any, names: tuple[str, ...] = LINEARS) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in names}


def run(**params: Any) -> tuple[Any, StageContext, Any]:
    model = tiny()
    original = {n: m.weight.detach().clone() for n, m in linears(model).items()}
    context = ctx()
    MagnitudePruner(MagnitudeParams.model_validate(params)).apply(model, context)
    return model, context, original


def test_layer_scope_prunes_each_matrix_by_magnitude() -> None:
    model, context, original = run(sparsity=0.4)
    for name, lin in linears(model).items():
        w, before = lin.weight, original[name]
        zero = w == 0
        assert float(zero.float().mean()) == pytest.approx(0.4, abs=1e-3)
        assert before[zero].abs().max() <= before[~zero].abs().min()  # the smallest magnitudes went
        torch.testing.assert_close(w[~zero], before[~zero])  # survivors unchanged
    layers = context.metrics["prune"]["layers"]
    assert set(layers) == set(linears(model)) and all(v == pytest.approx(0.4, abs=1e-3) for v in layers.values())
    assert "lm_head" not in " ".join(layers) and "embed" not in " ".join(layers)
    assert any("healing fine-tune" in w for w in context.metrics["warnings"])


def test_global_scope_uses_one_threshold() -> None:
    model, context, original = run(sparsity=0.5, scope="global")
    kept_min = min(float(original[n][lin.weight != 0].abs().min()) for n, lin in linears(model).items())
    pruned_max = max(float(original[n][lin.weight == 0].abs().max()) for n, lin in linears(model).items())
    assert pruned_max <= kept_min
    assert context.metrics["prune"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    per_layer = context.metrics["prune"]["layers"].values()
    assert max(per_layer) - min(per_layer) > 0.01  # layers differ: not layer-wise in disguise


def test_two_four_keeps_the_two_largest_of_every_four() -> None:
    model, context, original = run(n_m="2:4")
    for name, lin in linears(model).items():
        groups = lin.weight.reshape(-1, 4)
        assert bool(((groups != 0).sum(dim=1) == 2).all())
        before = original[name].reshape(-1, 4).abs()
        kept = before.topk(2, dim=1).indices.sort(dim=1).values
        assert torch.equal((groups != 0).nonzero()[:, 1].reshape(-1, 2), kept)
    assert MagnitudePruner(MagnitudeParams.model_validate({"n_m": "2:4"})).sparsity() == 0.5
    assert "2:4" in context.metrics["warnings"][0]


def test_targets_limit_the_modules() -> None:
    model, context, _ = run(sparsity=0.5, targets="mlp")
    mlp = ("gate_proj", "up_proj", "down_proj")
    assert all(n.rsplit(".", 1)[-1] in mlp for n in context.metrics["prune"]["layers"])
    assert not bool((linears(model, ("q_proj",))["model.layers.0.self_attn.q_proj"].weight == 0).any())


def test_permanent_and_survives_reload(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, _, _ = run(sparsity=0.3)
    keys = list(model.state_dict())
    assert not [k for k in keys if k.endswith(("weight_orig", "weight_mask"))]
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    for name, lin in linears(again).items():
        assert torch.equal(lin.weight, linears(model)[name].weight)


def test_bad_settings_are_tunekit_errors() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        MagnitudeParams.model_validate({"n_m": "4:2"})
    with pytest.raises(ValidationError):
        MagnitudeParams.model_validate({"sparsity": 1.0})
    with pytest.raises(UsageError, match="not a multiple of 48"):
        MagnitudePruner(MagnitudeParams.model_validate({"n_m": "3:48"})).apply(tiny(), ctx())  # 128 % 48 != 0
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=128, n_layer=1, n_head=4, vocab_size=512, n_positions=64))
    with pytest.raises(TunekitError):
        MagnitudePruner().apply(gpt2, ctx())
