"""The GPTQModel quantizers (gptq, awq): declarations, clear errors, and real quantize-save-reload runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from quant_helpers import linear_weight_counts, logits, quantization_config, relative_error
from tunekit_gptq import AWQQuantizer, GPTQQuantizer

from tunekit.core.errors import MissingDependencyError, UsageError
from tunekit.core.registry import get_registry
from tunekit.testing import build_tiny_model, build_tokenizer, make_context, save_tiny_model, saved_bits_per_weight

torch.set_num_threads(2)

HAS_GPTQMODEL = importlib.util.find_spec("gptqmodel") is not None and importlib.util.find_spec("optimum") is not None
needs_gptqmodel = pytest.mark.skipif(not HAS_GPTQMODEL, reason="pip install 'tunekit[gptq]'")
CALIBRATION = {"n_samples": 8, "seq_len": 64}


def gptq(**params: Any) -> GPTQQuantizer:
    return GPTQQuantizer(GPTQQuantizer.Params.model_validate({"calibration": CALIBRATION, **params}))


def awq(**params: Any) -> AWQQuantizer:
    return AWQQuantizer(AWQQuantizer.Params.model_validate({"calibration": CALIBRATION, **params}))


def test_registered_and_declared_without_torch() -> None:
    for cls in (GPTQQuantizer, AWQQuantizer):
        assert get_registry().get("quantizer", cls.name) is cls
        assert cls.requires.calibration and not cls.requires.cuda and cls.requires.extra == "gptq"
        assert not cls.on_load and cls.trainable  # LoRA on GPTQModel's kernels: trained below
    # one fp16 scale + one packed zero per group of 128: (16 + 4) / 128
    assert GPTQQuantizer().bits_per_weight() == pytest.approx(4.15625)
    assert gptq(bits=3, group_size=64).bits_per_weight() == pytest.approx(3 + 19 / 64)
    assert AWQQuantizer.effects.quality_cost < GPTQQuantizer.effects.quality_cost


@pytest.mark.parametrize("bad", [{"bits": 5}, {"group_size": 0}, {"damp_percent": 1.5},
                                 {"desc_act": True, "act_group_aware": True}, {"calibration": {"n_samples": 0}},
                                 {"calibration": {"dataset": "x"}}, {"keep_16bit": ["down_proj"]}])
def test_bad_params_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        GPTQQuantizer.Params.model_validate(bad)


def test_missing_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else real(name))
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunekit\[gptq\]'"):
        gptq().apply(build_tiny_model(), make_context())


@needs_gptqmodel
def test_cuda_only_kernel_on_cpu_says_so() -> None:
    with pytest.raises(MissingDependencyError, match=r"needs an NVIDIA GPU.*kernel: auto"):
        gptq(kernel="marlin").apply(build_tiny_model(), make_context())


@needs_gptqmodel
def test_group_size_must_divide_input_widths() -> None:
    model = build_tiny_model(hidden_size=192, num_attention_heads=3, num_key_value_heads=1, intermediate_size=384)
    with pytest.raises(UsageError, match="group_size 128 does not divide"):
        gptq(group_size=128).apply(model, make_context())


def run_and_check(plugin: GPTQQuantizer | AWQQuantizer, tmp_path: Path, max_error: float) -> dict:
    from transformers import AutoModelForCausalLM

    source = save_tiny_model(tmp_path / "source")
    full = AutoModelForCausalLM.from_pretrained(source)
    reference = logits(full)
    counts = linear_weight_counts(full)
    ctx = make_context(source)
    model = plugin.apply(full, ctx)
    before_save = logits(model)
    assert 0 < relative_error(before_save, reference) < max_error

    out = tmp_path / "out"
    assert plugin.save(model, out, ctx) is True
    config = quantization_config(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert torch.allclose(logits(reloaded), before_save, atol=1e-4)
    assert saved_bits_per_weight(out, counts) == pytest.approx(plugin.bits_per_weight(), rel=0.10)
    assert ctx.metrics["quantize"]["calibration_windows"] == CALIBRATION["n_samples"]
    prompt = torch.tensor([[0, 5, 6, 7]])
    generated = reloaded.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=2)
    assert generated.shape == (1, 8)
    assert_lora_trains(reloaded)
    return config


def assert_lora_trains(model: Any) -> None:
    """The declared ``trainable = True``: PEFT's LoRA layers train on GPTQModel's CPU kernels."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    peft_model.train()
    ids = torch.randint(3, 500, (1, 32), generator=torch.Generator().manual_seed(0))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(4):
        loss = peft_model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@needs_gptqmodel
def test_gptq_quantize_save_reload(tmp_path: Path) -> None:
    config = run_and_check(gptq(bits=4, group_size=128), tmp_path, max_error=0.35)
    assert config["quant_method"] == "gptq" and config["bits"] == 4 and config["group_size"] == 128


@needs_gptqmodel
@pytest.mark.slow  # ~40 s of CPU on the tiny model (AWQ's scale search): kept out of the fast budget
def test_awq_quantize_save_reload(tmp_path: Path) -> None:
    config = run_and_check(awq(group_size=128), tmp_path, max_error=0.35)
    assert config["quant_method"] == "awq" and config["zero_point"] is True


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_shipped_recipes_validate(method: str) -> None:
    from tunekit.core.recipe import load_recipe

    plugin = load_recipe(f"quantize-{method}").stages["quantizer"]
    assert plugin.name == method and plugin.params.group_size == 64 and plugin.requires.calibration


def test_calibration_windows_from_file_data_or_shipped_text(tmp_path: Path) -> None:
    from tunekit.core.quantization import CalibrationParams
    from tunekit.core.texts import calibration_path, calibration_windows

    assert "persuasion" not in calibration_path(CalibrationParams(), None).name  # evaluation text never calibrates
    windows = calibration_windows(build_tokenizer(), CalibrationParams(n_samples=5, seq_len=32))
    assert len(windows) == 5 and all(len(w) == 32 for w in windows)
    text = tmp_path / "calib.jsonl"
    text.write_text('{"text": "a short line"}\n')
    with pytest.raises(UsageError, match="fewer than seq_len"):
        calibration_windows(build_tokenizer(), CalibrationParams(file=str(text), seq_len=64))
    with pytest.raises(UsageError, match="not found"):
        calibration_windows(build_tokenizer(), CalibrationParams(file=str(tmp_path / "missing.txt")))
    ctx = make_context(data_path=text)
    with pytest.raises(UsageError, match="fewer than seq_len"):  # the run's --data is used when no file is named
        calibration_windows(build_tokenizer(), CalibrationParams(seq_len=64), ctx)


@needs_gptqmodel
@pytest.mark.slow
def test_gptq_beats_rtn_on_the_real_model() -> None:
    """SmolLM2-135M, 4-bit g64 (576 is not a multiple of 128): GPTQ's error feedback must beat plain rounding."""
    from quant_helpers import PERSUASION
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tunekit_rtn import RTNQuantizer

    from tunekit.core.fixtures import smollm2_path
    from tunekit.run.evaluate import perplexity_of_ids

    def perplexity(model: Any, ids: list[int]) -> float:
        return perplexity_of_ids(model, ids, seq_len=256).perplexity

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(PERSUASION.read_text()[:10000])["input_ids"][:1024]
    ctx = make_context(path)
    ctx.tokenizer = tokenizer
    rtn_model = RTNQuantizer(RTNQuantizer.Params(bits=4, group_size=64)).apply(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), ctx)
    rtn_ppl = perplexity(rtn_model, ids)
    del rtn_model
    plugin = gptq(bits=4, group_size=64, calibration={"n_samples": 8, "seq_len": 256})
    gptq_ppl = perplexity(plugin.apply(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), ctx), ids)
    assert gptq_ppl < rtn_ppl, (gptq_ppl, rtn_ppl)


@needs_gptqmodel
def test_gptq_keeps_the_model_dtype_on_cpu_and_awq_works_in_16_bit() -> None:
    """GPTQModel's own CPU default (bfloat16) is 30-50x slower than float32 on CPUs without AVX512-BF16:
    GPTQ keeps the loaded model's dtype; AWQ's torch kernel packs only 16-bit weights, so it keeps GPTQModel's."""
    from tunekit_gptq.backend import resolve_dtype

    assert resolve_dtype("auto", "cpu", "gptq", torch.float32) is torch.float32
    assert resolve_dtype("auto", "cpu", "gptq", torch.bfloat16) is torch.bfloat16  # never upcast a bf16 model
    assert resolve_dtype("auto", "cpu", "awq") == "auto" and resolve_dtype("auto", "cuda:0", "gptq") == "auto"
    assert resolve_dtype("bfloat16", "cpu", "gptq") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        awq(dtype="float32")


@needs_gptqmodel
def test_a_gptqmodel_crash_is_a_clear_error_not_a_dead_process(tmp_path: Path) -> None:
    """GPTQModel ends its process with os._exit(1) when a worker thread raises; the child absorbs that."""
    from tunekit_gptq.backend import run_in_child

    from tunekit.core.errors import PluginError

    source = tmp_path / "source"
    save_tiny_model(source, hidden_size=128, intermediate_size=256)
    spec = {"method": "awq", "params": awq(group_size=128).params.model_dump(mode="json"), "device": "cpu",
            "dtype": "float32",  # AWQ's torch kernel packs only fp16/bf16: GPTQModel's worker raises
            "threads": torch.get_num_threads(), "source": str(source), "out": str(tmp_path / "out"),
            "calibration": [{"input_ids": list(range(3, 67)), "attention_mask": [1] * 64}]}
    with pytest.raises(PluginError, match=r"exit code 1: .*only supports"):
        run_in_child(spec, tmp_path)
