"""The ``rtn`` quantizer: the grid, granularities, group-size checks, and a saved model that reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from quant_helpers import linear_weight_counts, logits, quantization_config, relative_error
from tunekit_rtn import RTNQuantizer
from tunekit_rtn.rounding import quantize_weight

from tunekit.core.errors import UsageError
from tunekit.core.registry import get_registry
from tunekit.testing import build_tiny_model, make_context, saved_bits_per_weight

torch.set_num_threads(2)


def rtn(**params: object) -> RTNQuantizer:
    return RTNQuantizer(RTNQuantizer.Params.model_validate(params))


def test_registered_and_declared_without_torch() -> None:
    assert get_registry().get("quantizer", "rtn") is RTNQuantizer
    assert rtn(bits=4, group_size=128).bits_per_weight() == pytest.approx(4 + 16 / 128)
    assert rtn(bits=4, group_size=64, sym=False).bits_per_weight() == pytest.approx(4 + 20 / 64)
    assert rtn(bits=3, granularity="channel").bits_per_weight() == 3.0
    assert rtn().storage_bits_per_weight(16) == 16.0
    assert "lm_head" in rtn().kept_16bit()
    assert not RTNQuantizer.requires.calibration and not RTNQuantizer.requires.cuda


@pytest.mark.parametrize("bad", [{"bits": 1}, {"group_size": 0}, {"granularity": "group", "group_size": -1},
                                 {"granularity": "row"}, {"bitz": 4}])
def test_bad_params_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        RTNQuantizer.Params.model_validate(bad)


@pytest.mark.parametrize("granularity,sym", [("tensor", True), ("channel", False), ("group", True), ("group", False)])
def test_grid_has_at_most_2_to_the_bits_levels(granularity: str, sym: bool) -> None:
    torch.manual_seed(0)
    weight = torch.randn(16, 128)
    params = RTNQuantizer.Params(bits=3, granularity=granularity, sym=sym, group_size=32)
    out = quantize_weight(weight, params)
    rows = {"tensor": out.reshape(1, -1), "channel": out, "group": out.reshape(-1, 32)}[granularity]
    assert max(len(row.unique()) for row in rows) <= 8
    assert relative_error(out, weight) < 0.45
    # finer granularity never hurts on the same weights
    coarse = quantize_weight(weight, RTNQuantizer.Params(bits=3, granularity="tensor", sym=sym))
    assert relative_error(out, weight) <= relative_error(coarse, weight) + 1e-6


def test_quantize_save_reload(tmp_path: Path) -> None:
    model = build_tiny_model()
    before = logits(model)
    lm_head = model.lm_head.weight.clone()
    counts = linear_weight_counts(model)
    plugin = rtn(bits=4, group_size=64)
    ctx = make_context()
    model = plugin.apply(model, ctx)
    after = logits(model)
    assert ctx.metrics["quantize"]["quantized_layers"] == 14
    assert torch.equal(model.lm_head.weight, lm_head)  # kept in 16-bit (here: fp32)
    assert 0 < relative_error(after, before) < 0.35
    q = model.model.layers[0].self_attn.q_proj.weight
    assert max(len(group.unique()) for group in q.reshape(-1, 64)) <= 16

    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert quantization_config(tmp_path) is None  # fake-quant: a plain model any tool loads
    assert torch.allclose(logits(reloaded), after, atol=1e-5)
    stored = saved_bits_per_weight(tmp_path, counts)
    assert stored == pytest.approx(plugin.storage_bits_per_weight(32), rel=0.10)


def test_more_bits_less_error() -> None:
    errors = []
    for bits in (3, 4, 8):
        model = build_tiny_model()
        before = logits(model)
        rtn(bits=bits, group_size=128).apply(model, make_context())
        errors.append(relative_error(logits(model), before))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.03


def test_group_size_must_divide_input_widths() -> None:
    # hidden 192 (like SmolLM2's 576 = 4.5 x 128): g128 leaves a partial group, g64 divides it
    model = build_tiny_model(hidden_size=192, num_attention_heads=3, num_key_value_heads=1, intermediate_size=384)
    with pytest.raises(UsageError, match=r"group_size 128 does not divide .* \[64, 32, 16\]"):
        rtn(group_size=128).apply(model, make_context())
    rtn(group_size=64).apply(model, make_context())


def test_keep_16bit_by_name() -> None:
    model = build_tiny_model()
    down = model.model.layers[1].mlp.down_proj.weight.clone()
    rtn(keep_16bit=["lm_head", "down_proj"]).apply(model, make_context())
    assert torch.equal(model.model.layers[1].mlp.down_proj.weight, down)
    with pytest.raises(UsageError, match="no linear layer left"):
        rtn(keep_16bit=["model", "lm_head"]).apply(build_tiny_model(), make_context())


def test_shipped_recipe_validates() -> None:
    from tunekit.core.recipe import load_recipe

    plugin = load_recipe("quantize-rtn").stages["quantizer"]
    assert isinstance(plugin, RTNQuantizer) and plugin.params.group_size == 64
