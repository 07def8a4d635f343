"""The ``dynamic-int8`` quantizer: int8 modules in place, an own-format output that reloads, refused formats."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from quant_helpers import logits, relative_error
from tunekit_dynamic import DynamicInt8Quantizer
from tunekit_dynamic.dynamic import STATE_FILE

from tunekit.core.errors import RecipeError, UsageError
from tunekit.core.registry import get_registry
from tunekit.testing import build_tiny_model as tiny_llama
from tunekit.testing import make_context as context

torch.set_num_threads(2)
DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


def dyn(**params: object) -> DynamicInt8Quantizer:
    return DynamicInt8Quantizer(DynamicInt8Quantizer.Params.model_validate(params))


def test_registered_and_declared() -> None:
    assert get_registry().get("quantizer", "dynamic-int8") is DynamicInt8Quantizer
    plugin = dyn()
    assert plugin.bits_per_weight() == 8.0 and plugin.storage_bits_per_weight(32) == 8.0
    assert "lm_head" in plugin.kept_16bit() and "embed_tokens" in plugin.kept_16bit()
    assert not DynamicInt8Quantizer.requires.cuda and not DynamicInt8Quantizer.requires.calibration
    assert not DynamicInt8Quantizer.trainable
    assert DynamicInt8Quantizer.output_formats == {"hf"}


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_linears_become_int8_and_logits_stay_close(granularity: str) -> None:
    model = tiny_llama()
    before = logits(model)
    ctx = context()
    model = dyn(granularity=granularity).apply(model, ctx)
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, DynamicLinear)
    weight = layer.weight()
    assert weight.dtype == torch.qint8
    if granularity == "channel":
        assert weight.q_per_channel_scales().numel() == layer.out_features
    assert isinstance(model.lm_head, torch.nn.Linear) and not isinstance(model.lm_head, DynamicLinear)
    assert ctx.metrics["quantize"]["quantized_layers"] == 14
    error = relative_error(logits(model), before)
    assert 0 < error < 0.05, error


def test_per_channel_beats_per_tensor_on_an_outlier_row() -> None:
    errors = {}
    for granularity in ("tensor", "channel"):
        model = tiny_llama()
        with torch.no_grad():
            for layer in model.model.layers:  # one large row per layer: a per-tensor scale wastes its grid on it
                layer.mlp.down_proj.weight[0] *= 50
        before = logits(model)
        dyn(granularity=granularity).apply(model, context())
        errors[granularity] = relative_error(logits(model), before)
    assert errors["channel"] < errors["tensor"]


def test_bf16_model_is_run_in_fp32() -> None:
    model = tiny_llama().to(torch.bfloat16)
    lines: list[str] = []
    ctx = context(log=lines.append)
    model = dyn().apply(model, ctx)
    assert model.dtype == torch.float32 and any("converting the bfloat16 model" in line for line in lines)
    assert torch.isfinite(logits(model)).all()


def test_everything_kept_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no linear layer left"):
        dyn(keep_16bit=["model", "lm_head"]).apply(tiny_llama(), context())


def test_saved_state_dict_reloads_to_the_same_model_at_8_bits(tmp_path: Path) -> None:
    from tunekit.run.saved_model import load_plugin_format

    dense = tiny_llama()
    dense.save_pretrained(tmp_path / "fp32")
    fp32_bytes = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    linear = sum(p.numel() for n, p in dense.named_parameters() if n.endswith("proj.weight"))
    plugin = dyn(keep_16bit=[])
    model = plugin.apply(dense, context())
    out = tmp_path / "out"
    out.mkdir()
    assert plugin.save(model, out, context()) is True
    (out / "tunekit-recipe.yaml").write_text(yaml.safe_dump({"quantizer": plugin.describe()}))
    assert (out / "config.json").is_file() and not list(out.glob("*.safetensors"))
    reloaded = load_plugin_format(out)
    assert reloaded is not None and isinstance(reloaded.lm_head, DynamicLinear)
    assert torch.equal(logits(reloaded), logits(model))
    # int8 linears (1 byte each) + the fp32 rest: the file is what 8 bits/weight predicts, within 10%
    quantized = linear + model.lm_head.weight().numel()  # the tiny model's lm_head is untied: quantized too
    predicted = fp32_bytes - quantized * 4 + quantized * 1
    assert (out / STATE_FILE).stat().st_size == pytest.approx(predicted, rel=0.10)


def test_an_ordinary_folder_is_left_to_from_pretrained(tmp_path: Path) -> None:
    from tunekit.run.saved_model import load_plugin_format

    tiny_llama().save_pretrained(tmp_path)
    (tmp_path / "tunekit-recipe.yaml").write_text(yaml.safe_dump({"quantizer": dyn().describe()}))
    assert load_plugin_format(tmp_path) is None


@pytest.mark.parametrize("formats,bad", [(["hf", "gguf:q8_0"], 1), (["merged"], 0)])
def test_other_formats_are_refused_when_the_recipe_loads(tmp_path: Path, formats: list[str], bad: int) -> None:
    from tunekit.core.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"quantizer": {"method": "dynamic-int8"}, "output": {"formats": formats}}))
    with pytest.raises(RecipeError, match="cannot be written as") as info:
        load_recipe(recipe)
    assert info.value.key == f"output.formats[{bad}]"


def test_apply_then_generate_from_the_output(tmp_path: Path) -> None:
    from tunekit.run.generate import generate
    from tunekit.run.pipeline import apply_recipe
    from tunekit.testing import save_tiny_model as save_tiny

    model_dir = save_tiny(tmp_path / "tiny")
    out = tmp_path / "out"
    apply_recipe("quantize-dynamic-int8", model=model_dir, output=out, quiet=True, overrides=["eval.perplexity=false"])
    assert (out / STATE_FILE).is_file() and (out / "tokenizer.json").is_file()
    completion = generate(str(out), "Emma Woodhouse", max_new_tokens=4, seed=0)
    assert completion.new_tokens == 4
