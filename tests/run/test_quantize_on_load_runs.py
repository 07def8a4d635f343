"""Quantize-on-load runs (bitsandbytes) in the order the pipeline really runs them.

Why these exist: on CPUs with AVX512-BF16, bitsandbytes repacks 4-bit layers on their first no-grad
forward; when that forward was the "before" evaluation, QLoRA trained nothing (every lora_B stayed 0)
and quantize-nf4 saved re-quantized constants. The "before" perplexity was also measured on the
already-quantized model, so a quantization cost read as zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tunekit.core.context import RunState, StageContext
from tunekit.core.errors import PluginError
from tunekit.core.recipe import load_recipe
from tunekit.run.load import stage_load
from tunekit.run.pipeline import apply_recipe

pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")

torch.set_num_threads(2)

QLORA = {"quantizer": {"method": "nf4", "compute_dtype": "float32"},
         "adapter": {"method": "lora", "r": 4, "targets": "all-linear"},
         "train": {"data": "calibration_austen_emma.txt", "seq_len": 64, "batch_size": 2, "max_steps": 4,
                   "lr": 1e-2, "eval_split": 0.0, "max_samples": 16},
         "eval": {"seq_len": 64, "max_tokens": 256}, "output": {"formats": ["adapter"]}}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_tiny_model(folder, max_position_embeddings=128)
    return folder


def write(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def loaded(recipe: Path, tiny_dir: Path) -> StageContext:
    resolved = load_recipe(recipe)
    ctx = StageContext(recipe=resolved.recipe, model_path=tiny_dir, run=RunState(stages=resolved.stages))
    return ctx


def lora_b_grads(tiny_dir: Path, recipe: Path, *, eval_first: bool) -> dict[str, torch.Tensor]:
    """load -> (no-grad evaluation) -> quantize -> adapter, then one backward: each lora_B's gradient."""
    from tunekit.run import evaluate

    ctx = loaded(recipe, tiny_dir)
    model = stage_load(None, None, ctx)
    if eval_first:  # what the "before" evaluation did to the quantized model
        evaluate.perplexity(model, ctx.tokenizer, evaluate.eval_text(None), seq_len=64, max_tokens=128)
    model = ctx.run.stages["quantizer"].apply(model, ctx)
    torch.manual_seed(0)
    model = ctx.run.stages["adapter"].apply(model, ctx)
    model.train()
    ids = torch.tensor([ctx.tokenizer(evaluate.eval_text(None))["input_ids"][:64]])
    with torch.no_grad():  # a nonzero lora_B, so gradients also reach the layers below through the adapters
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.01)
    model(input_ids=ids, labels=ids).loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if "lora_B" in name}


def test_an_evaluation_before_quantize_leaves_qlora_gradients_intact(tiny_dir: Path, tmp_path: Path) -> None:
    recipe = write(tmp_path, QLORA)
    reference = lora_b_grads(tiny_dir, recipe, eval_first=False)
    after_eval = lora_b_grads(tiny_dir, recipe, eval_first=True)
    assert reference.keys() == after_eval.keys() and len(reference) == 14
    for name, grad in reference.items():
        assert grad.norm() > 0, name
        assert torch.allclose(after_eval[name], grad, rtol=1e-4, atol=1e-7), name


def test_a_layer_repacked_before_the_fixups_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM
    from tunekit_bnb.fixups import cpu_repack_available

    if not cpu_repack_available():
        pytest.skip("bitsandbytes repacks only on CPUs with AVX512-BF16")
    ctx = loaded(write(tmp_path, QLORA), tiny_dir)
    quantizer = ctx.run.stages["quantizer"]
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, **quantizer.load_kwargs(ctx)).eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7, 8]]))
    with pytest.raises(PluginError, match="repacked"):
        quantizer.apply(model, ctx)


def adapter_b_norm(out: Path) -> float:
    from safetensors.torch import load_file

    weights = load_file(out / "adapter_model.safetensors")
    b = [t for name, t in weights.items() if "lora_B" in name]
    assert b
    return float(sum(t.float().norm() for t in b))


def test_qlora_with_evaluation_on_trains_and_measures_the_unquantized_base(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tunekit.run import evaluate

    out = tmp_path / "out"
    result = apply_recipe(write(tmp_path, QLORA), model=tiny_dir, output=out, quiet=True)
    assert adapter_b_norm(out) > 0  # lora_B starts at 0: it moved
    ev = result.metrics["evaluate"]
    assert ev["baseline"].startswith("unquantized base")
    assert "load_baseline" in result.metrics["timings_s"]
    assert result.metrics["quantize"]["cpu_kernel"] == "portable"
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    direct = evaluate.perplexity(base, tokenizer, evaluate.eval_text(None), seq_len=64, max_tokens=256)
    assert ev["perplexity_before"] == round(direct.perplexity, 4)


def test_quantize_nf4_reports_its_cost_and_saves_what_it_evaluated(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.quantization import portable_cpu_kernels
    from tunekit.run import evaluate

    recipe = write(tmp_path, {"quantizer": {"method": "nf4"}, "eval": {"seq_len": 64, "max_tokens": 256}})
    out = tmp_path / "out"
    ev = apply_recipe(recipe, model=tiny_dir, output=out, quiet=True).metrics["evaluate"]
    assert ev["perplexity_before"] != ev["perplexity_after"]
    assert json.loads((out / "metrics.json").read_text())["quantize"]["cpu_kernel"] == "portable"
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert portable_cpu_kernels(reloaded) == 14  # the kernel path metrics.json names
    again = evaluate.perplexity(reloaded, AutoTokenizer.from_pretrained(out), evaluate.eval_text(None),
                                seq_len=64, max_tokens=256)
    assert round(again.perplexity, 4) == ev["perplexity_after"]


def test_no_baseline_is_said_plainly_when_the_base_does_not_fit(tiny_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.run import pipeline

    real = pipeline.stage_load

    def load(plugin: Any, model: Any, ctx: StageContext) -> Any:
        if ctx.run.unquantized:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(plugin, model, ctx)

    monkeypatch.setitem(pipeline.HOST_STAGES, "load", load)
    recipe = write(tmp_path, {"quantizer": {"method": "nf4"}, "eval": {"seq_len": 64, "max_tokens": 128}})
    ev = apply_recipe(recipe, model=tiny_dir, output=tmp_path / "out", quiet=True).metrics["evaluate"]
    assert ev["baseline"].startswith("not measured") and "perplexity_before" not in ev
    assert ev["perplexity_after"] > 0


def test_data_trains_but_is_not_the_evaluation_text(tiny_dir: Path, tmp_path: Path) -> None:
    """--data is the training file; perplexity stays on the held-out text unless eval.data names another."""
    train_file = tmp_path / "capitals.jsonl"
    train_file.write_text("".join(json.dumps({"instruction": f"Capital of country {i}?", "output": f"City {i}"})
                                  + "\n" for i in range(20)))
    recipe = write(tmp_path, {"adapter": {"method": "lora", "r": 4},
                              "train": {"seq_len": 128, "batch_size": 2, "max_steps": 1, "eval_split": 0.0},
                              "eval": {"seq_len": 64, "max_tokens": 128}})
    held_out = apply_recipe(recipe, model=tiny_dir, data=train_file, output=tmp_path / "a", quiet=True)
    plan_eval = next(s for s in held_out.plan["stages"] if s["stage"] == "evaluate")
    assert plan_eval["data"] == "shipped Persuasion excerpt"
    asked = apply_recipe(recipe, model=tiny_dir, data=train_file, output=tmp_path / "b", quiet=True,
                         overrides=[f"eval.data={train_file}"])
    before = [r.metrics["evaluate"]["perplexity_before"] for r in (held_out, asked)]
    assert before[0] != before[1]  # the same base scored on two different texts
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.run import evaluate

    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    direct = evaluate.perplexity(base, AutoTokenizer.from_pretrained(tiny_dir), evaluate.eval_text(None),
                                 seq_len=64, max_tokens=128)
    assert before[0] == round(direct.perplexity, 4)
