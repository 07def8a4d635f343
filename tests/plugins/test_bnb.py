"""The bitsandbytes quantizers (nf4, fp4, int8): load_kwargs, CPU fix-ups, save, reload, declared bits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from quant_helpers import linear_weight_counts, logits, quantization_config, relative_error
from tunekit_bnb import FP4Quantizer, Int8Quantizer, NF4Quantizer
from tunekit_bnb.fixups import cpu_repack_available

from tunekit.core.arch import ModelArch
from tunekit.core.errors import MissingDependencyError, PluginError, UsageError
from tunekit.core.quantization import portable_cpu_kernels
from tunekit.core.registry import get_registry
from tunekit.testing import build_tiny_model, make_context, save_tiny_model, saved_bits_per_weight

torch.set_num_threads(2)


def test_registered_and_declared_without_torch() -> None:
    registry = get_registry()
    for cls in (NF4Quantizer, FP4Quantizer, Int8Quantizer):
        assert registry.get("quantizer", cls.name) is cls
        assert cls.on_load and cls.trainable and not cls.requires.cuda and cls.requires.extra == "bnb"
    # QLoRA §3: 0.5 bit of block constants, 0.127 with double quantization
    assert NF4Quantizer().bits_per_weight() == pytest.approx(4.127, abs=1e-3)
    assert FP4Quantizer(FP4Quantizer.Params(double_quant=False)).bits_per_weight() == 4.5
    assert Int8Quantizer().bits_per_weight() == 8.0
    assert NF4Quantizer.effects.quality_cost < FP4Quantizer.effects.quality_cost
    with pytest.raises(ValidationError):
        NF4Quantizer.Params.model_validate({"compute_dtype": "int4"})


def test_load_kwargs_build_a_bitsandbytes_config() -> None:
    config = NF4Quantizer().load_kwargs(make_context())["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float32  # 'auto' on CPU
    gpu = make_context(device="cuda")
    assert NF4Quantizer().load_kwargs(gpu)["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16
    int8 = Int8Quantizer(Int8Quantizer.Params(llm_int8_threshold=4.0))
    eight = int8.load_kwargs(make_context())["quantization_config"]
    assert eight.load_in_8bit and eight.llm_int8_threshold == 4.0 and eight.llm_int8_skip_modules == ["lm_head"]


def test_cpu_4bit_widths_must_be_multiples_of_32() -> None:
    arch = ModelArch(name="odd", layers=2, hidden=200, intermediate=400, heads=4, kv_heads=2, vocab=512)
    with pytest.raises(UsageError, match="multiples of 32"):
        NF4Quantizer().load_kwargs(make_context(arch=arch))
    NF4Quantizer().load_kwargs(make_context(arch=arch, device="cuda"))  # only the CPU path has the limit


def test_missing_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    with pytest.raises(MissingDependencyError, match=r"tunekit\[bnb\]"):
        NF4Quantizer().load_kwargs(make_context())


def test_apply_refuses_a_model_loaded_without_the_config() -> None:
    with pytest.raises(PluginError, match="no quantized layer"):
        NF4Quantizer().apply(build_tiny_model(), make_context())


@pytest.mark.parametrize("plugin,max_error", [
    (NF4Quantizer(), 0.35),
    (FP4Quantizer(FP4Quantizer.Params(double_quant=False)), 0.45),
    (Int8Quantizer(), 0.05),
])
def test_quantize_on_load_save_reload(tmp_path: Path, plugin: NF4Quantizer | Int8Quantizer, max_error: float) -> None:
    from transformers import AutoModelForCausalLM

    source = save_tiny_model(tmp_path / "source")
    full = AutoModelForCausalLM.from_pretrained(source)
    reference = logits(full)
    counts = linear_weight_counts(full)

    ctx = make_context(source)
    model = AutoModelForCausalLM.from_pretrained(source, **plugin.load_kwargs(ctx))
    model = plugin.prepare_loaded(model, ctx)  # what the pipeline's load stage does, before any forward
    assert ctx.metrics["quantize"]["quantized_layers"] == 14  # lm_head kept
    model.eval()
    before_save = logits(model)  # an eval forward first: the step that corrupted saves on AVX512-BF16 CPUs
    assert 0 < relative_error(before_save, reference) < max_error

    out = tmp_path / "out"
    model.save_pretrained(out)
    assert quantization_config(out)["quant_method"] == "bitsandbytes"
    assert saved_bits_per_weight(out, counts) == pytest.approx(plugin.bits_per_weight(), rel=0.10)
    # the kernel path tunekit measured (recorded in metrics.json, used by tunekit's own loaders): identical
    measured_path = AutoModelForCausalLM.from_pretrained(out)
    portable_cpu_kernels(measured_path)
    assert torch.allclose(logits(measured_path), before_save, atol=1e-4)
    # a plain from_pretrained: on an AVX512-BF16 CPU bitsandbytes computes 4-bit layers in bf16 (close, not
    # identical); elsewhere it is the same path
    plain = logits(AutoModelForCausalLM.from_pretrained(out))
    if isinstance(plugin, NF4Quantizer) and cpu_repack_available():
        assert ctx.metrics["quantize"]["cpu_repack_available"] is True
        assert relative_error(plain, before_save) < 0.02
    else:
        assert torch.allclose(plain, before_save, atol=1e-4)


@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
def test_shipped_recipes_validate(method: str) -> None:
    from tunekit.core.recipe import load_recipe

    plugin = load_recipe(f"quantize-{method}").stages["quantizer"]
    assert plugin.name == method and plugin.on_load
