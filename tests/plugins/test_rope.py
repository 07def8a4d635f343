"""RoPE context extenders: rope_parameters written the transformers-5 way, inverse frequencies equal to the
published formulas (docs/reference.md "Context extension"), and forwards at 2-4x the original context run."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from tunekit_rope import DynamicRope, LinearRope, Llama3Rope, LongRope, RopeExtender, YarnRope

from tunekit.core.context import StageContext
from tunekit.core.errors import TunekitError, UsageError
from tunekit.core.recipe_model import Recipe

L = 64  # original context of the tiny model
THETA = 10000.0
HEAD_DIM = 32  # hidden 128 / 4 heads


def tiny() -> Any:
    from tunekit.testing import build_tiny_model

    return build_tiny_model(hidden_size=128, intermediate_size=256, max_position_embeddings=L,
                            rope_parameters={"rope_type": "default", "rope_theta": THETA})


def ctx() -> StageContext:
    return StageContext(recipe=Recipe.model_validate({}), log=lambda _m: None)


def base_inv() -> torch.Tensor:
    return 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float) / HEAD_DIM))


def extend(cls: type[RopeExtender], **params: Any) -> Any:
    plugin = cls(cls.Params(**params))
    return plugin.apply(tiny(), ctx())


def yarn_reference(s: float, beta_fast: float = 32, beta_slow: float = 1) -> torch.Tensor:
    d = HEAD_DIM

    def corr(rot: float) -> float:  # d * ln(L / (2 pi rot)) / (2 ln base)
        return d * math.log(L / (2 * math.pi * rot)) / (2 * math.log(THETA))

    low, high = max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), d - 1)
    ramp = ((torch.arange(d // 2, dtype=torch.float) - low) / (high - low)).clamp(0, 1)
    inv = base_inv()
    return inv / s * ramp + inv * (1 - ramp)


def llama3_reference(s: float, low: float = 1.0, high: float = 4.0) -> torch.Tensor:
    inv = base_inv()
    out = []
    for f in inv.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < L / high:
            out.append(f)
        elif wavelen > L / low:
            out.append(f / s)
        else:
            smooth = (L / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / s + smooth * f)
    return torch.tensor(out)


def test_linear_divides_every_frequency() -> None:
    model = extend(LinearRope, factor=4.0)
    rope = model.config.rope_parameters
    assert rope == {"rope_type": "linear", "rope_theta": THETA, "factor": 4.0}
    assert model.config.max_position_embeddings == 4 * L
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, base_inv() / 4.0)


def test_yarn_matches_the_ramp_and_attention_factor() -> None:
    model = extend(YarnRope, factor=4.0)
    rope = model.config.rope_parameters
    assert rope["rope_type"] == "yarn" and rope["rope_theta"] == THETA
    assert rope["original_max_position_embeddings"] == L
    rotary = model.model.rotary_emb
    torch.testing.assert_close(rotary.inv_freq, yarn_reference(4.0))
    assert rotary.attention_scaling == pytest.approx(0.1 * math.log(4.0) + 1)


def test_llama3_bands() -> None:
    model = extend(Llama3Rope, factor=8.0)
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, llama3_reference(8.0))
    assert model.config.rope_parameters["high_freq_factor"] == 4.0


def test_dynamic_keeps_short_inputs_and_grows_the_base_beyond() -> None:
    model = extend(DynamicRope, factor=2.0)
    assert model.config.max_position_embeddings == L  # the formula divides by the original length
    rotary = model.model.rotary_emb
    torch.testing.assert_close(rotary.inv_freq, base_inv())
    n = 3 * L
    with torch.no_grad():
        model(torch.randint(3, 500, (1, n)))
    s, d = 2.0, HEAD_DIM
    base = THETA * ((s * n / L) - (s - 1)) ** (d / (d - 2))
    expected = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    torch.testing.assert_close(rotary.inv_freq, expected)


def test_longrope_short_and_long_factors() -> None:
    short = [1.0] * (HEAD_DIM // 2)
    long = [1.0 + i / 4 for i in range(HEAD_DIM // 2)]
    model = extend(LongRope, factor=4.0, short_factor=short, long_factor=long)
    rotary = model.model.rotary_emb
    torch.testing.assert_close(rotary.inv_freq, base_inv())  # short inputs: short_factor (all 1)
    assert rotary.attention_scaling == pytest.approx(math.sqrt(1 + math.log(4.0) / math.log(L)))
    with torch.no_grad():
        model(torch.randint(3, 500, (1, 2 * L)))
    torch.testing.assert_close(rotary.inv_freq, base_inv() / torch.tensor(long))


def test_longrope_default_long_factor_is_the_yarn_ramp() -> None:
    model = extend(LongRope, factor=4.0)
    long = torch.tensor(model.config.rope_parameters["long_factor"])
    torch.testing.assert_close(base_inv() / long, yarn_reference(4.0))


@pytest.mark.parametrize("cls", [LinearRope, DynamicRope, YarnRope, Llama3Rope, LongRope])
@pytest.mark.parametrize("multiple", [2, 4])
def test_forward_beyond_the_original_context(cls: type[RopeExtender], multiple: int) -> None:
    model = extend(cls, factor=float(multiple))
    n = multiple * L
    ids = torch.randint(3, 500, (1, n))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, n, 512) and torch.isfinite(logits).all()
    assert model.config.rope_parameters["rope_theta"] == THETA


def test_target_length_sets_the_factor() -> None:
    model = extend(YarnRope, target_length=3 * L)
    assert model.config.rope_parameters["factor"] == pytest.approx(3.0)
    with pytest.raises(UsageError, match="less than target_length"):
        extend(YarnRope, factor=2.0, target_length=3 * L)
    with pytest.raises(UsageError, match="nothing to extend"):
        extend(LinearRope, target_length=L // 2)


def test_saved_model_reloads_with_the_extension(tmp_path: Any) -> None:
    from transformers import AutoModelForCausalLM

    model = extend(YarnRope, factor=2.0)
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert again.config.rope_parameters["rope_type"] == "yarn"
    torch.testing.assert_close(again.model.rotary_emb.inv_freq, yarn_reference(2.0))


def test_refuses_models_without_rope_and_double_scaling() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=128, n_layer=1, n_head=4, vocab_size=512, n_positions=64))
    with pytest.raises(TunekitError, match="no rotary"):
        YarnRope().apply(gpt2, ctx())
    model = extend(LinearRope, factor=2.0)
    with pytest.raises(UsageError, match="already uses"):
        YarnRope().apply(model, ctx())


def test_sliding_window_needs_a_model_that_has_one() -> None:
    with pytest.raises(UsageError, match="sliding-window"):
        extend(YarnRope, factor=2.0, sliding_window=32)
