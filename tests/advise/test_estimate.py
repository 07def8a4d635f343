"""The estimator's formulas against hand-computed values (docs/reference.md) and its inverse questions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import recommend_fakes

from tunekit.advise.estimate import (
    ALLOCATOR,
    BAND_HIGH,
    BAND_LOW,
    CUDA_CONTEXT_GB,
    DEQUANT_LAYERS,
    FITS_QUANTILE,
    GATHER_LAYERS,
    GB,
    INFER_ACT_SCALE,
    QUANTS,
    Setup,
    default_lora_params,
    estimate,
    fits,
    fits_bytes,
    kv_cache_bytes,
    layer_activation_bytes_per_token,
    layer_bytes_16bit,
    logits_bytes,
    lora_dropout_bytes_per_token,
    norm_upcast_bytes_per_token,
    quant_spec,
    quantized_input_bytes_per_token,
    setup_from_recipe,
    training_activation_bytes,
    training_state_bytes,
    weight_bytes,
)
from tunekit.advise.limits import max_batch, max_seq_len, smallest_quant_that_fits
from tunekit.core.arch import ModelArch
from tunekit.core.errors import RecipeError, UsageError
from tunekit.core.model_facts import resolve_model
from tunekit.core.recipe import load_recipe
from tunekit.core.registry import load_registry

GIB = 2**30
TINY = ModelArch(name="tiny", layers=2, hidden=128, intermediate=256, heads=4, kv_heads=2, head_dim=32, vocab=1000)


def llama2() -> ModelArch:
    return resolve_model("llama-2-7b")


def test_weights_bf16_and_nf4_by_hand() -> None:
    arch = llama2()
    assert arch.param_count() == 6_738_415_616  # Llama-2-7B, as PEFT/transformers print it
    assert weight_bytes(arch, QUANTS["bf16"]) == 6_738_415_616 * 2
    linear, kept = 6_476_005_376, 262_144_000 + 266_240  # 32 layers of linears; embed + lm_head + norms
    assert weight_bytes(arch, QUANTS["nf4"]) == pytest.approx(linear * 4.127 / 8 + kept * 2)


@pytest.mark.parametrize(("gguf", "gib"), [("Q8_0", 7.95), ("Q4_K_M", 4.58), ("F16", 14.96)])
def test_gguf_file_sizes_match_llama_cpp(gguf: str, gib: float) -> None:
    """llama.cpp tools/quantize/README.md: Llama-3.1-8B files."""
    assert weight_bytes(resolve_model("llama-3.1-8b"), quant_spec(gguf)) / GIB == pytest.approx(gib, rel=0.01)


def test_kv_cache_llama3_8b() -> None:
    arch = resolve_model("llama-3-8b")
    assert kv_cache_bytes(arch, 8192, 1) == GIB  # 2 x 32 x 8 x 128 x 8192 x 2 bytes
    assert kv_cache_bytes(arch, 131072, 1) == 16 * GIB
    assert kv_cache_bytes(arch, 8192, 1, kv_bits=8) == GIB / 2


def test_lora_trainable_params_match_peft() -> None:
    arch = llama2()
    assert default_lora_params(arch, r=8, targets=("q_proj", "v_proj")) == 4_194_304
    assert default_lora_params(arch, r=16) == 39_976_960


@pytest.mark.parametrize(("optimizer", "precision", "per_param"), [
    ("adamw", "mixed", (2, 2, 12)), ("adamw-8bit", "mixed", (2, 2, 6)), ("sgd", "mixed", (2, 2, 8)),
    ("adamw", "bf16", (2, 2, 4)), ("adamw", "fp32", (4, 4, 8)),
])
def test_training_state_bytes_per_param(optimizer: str, precision: str, per_param: tuple[int, int, int]) -> None:
    assert training_state_bytes(1000, optimizer, precision) == tuple(1000 * b for b in per_param)


def test_activations_by_hand() -> None:
    # 2·(4h + 2q + 2kv + 4i) = 2·(512 + 256 + 128 + 1024) bytes per token per layer
    assert layer_activation_bytes_per_token(TINY, 64, "sdpa") == 3840
    assert layer_activation_bytes_per_token(TINY, 64, "eager") == 3840 + 5 * 4 * 64
    tokens = 64 * 2
    logits = tokens * 1000 * 10
    # + two fp32 RMSNorm copies (8h = 1024) + LoRA dropout copies of every adapted input: 2·(6·128 + 256) = 2048
    layer = 3840 + 1024 + 2048
    ckpt = training_activation_bytes(TINY, Setup(seq_len=64, batch=2, grad_ckpt=True))
    assert ckpt == 2 * 2 * 128 * tokens + layer * tokens + logits
    full = training_activation_bytes(TINY, Setup(seq_len=64, batch=2, grad_ckpt=False))
    assert full == 2 * layer * tokens + logits
    chunked = training_activation_bytes(TINY, Setup(seq_len=64, batch=2, chunked_loss=True))
    assert chunked == ckpt - logits + tokens * 1000 * 2
    no_dropout = training_activation_bytes(TINY, Setup(seq_len=64, batch=2, lora_dropout=False))
    assert no_dropout == ckpt - 2048 * tokens
    full_ft = training_activation_bytes(TINY, Setup(method="full", seq_len=64, batch=2))
    assert full_ft == no_dropout  # no adapters, no dropout copies


def test_new_activation_terms_by_hand() -> None:
    """Each term of issue 16 against its byte count on TINY (h 128, q 128, i 256, 2 layers, vocab 1000)."""
    assert norm_upcast_bytes_per_token(TINY) == 8 * 128
    assert lora_dropout_bytes_per_token(TINY, ("q_proj", "v_proj")) == 2 * (128 + 128)
    assert quantized_input_bytes_per_token(TINY) == 2 * (2 * 128 + 128 + 256)
    assert layer_bytes_16bit(TINY) == 2 * (128 * 128 * 2 + 128 * 64 * 2 + 128 * 256 * 3)
    assert logits_bytes(TINY, 10, chunked=False) == 10 * 1000 * 10
    assert logits_bytes(TINY, 10, chunked=True) == 10 * 1000 * 2
    tokens = 64
    base = Setup(method="qlora", quant=QUANTS["nf4"], seq_len=64, lora_targets=("q_proj",))
    qlora = training_activation_bytes(TINY, base)
    layer = 3840 + 1024 + 2 * 128 + 2 * (2 * 128 + 128 + 256)  # 4-bit linears keep their inputs
    assert qlora == 2 * 2 * 128 * tokens + layer * tokens + tokens * 1000 * 10
    offload = training_activation_bytes(TINY, replace(base, activation_offload=True))
    assert offload == layer * tokens + 2 * 128 * tokens + tokens * 1000 * 10  # checkpoints live in CPU RAM


def test_dequant_and_gather_working_sets() -> None:
    arch = llama2()
    layer = layer_bytes_16bit(arch)
    bf16 = estimate(arch, method="lora", lora_dropout=False)
    nf4 = estimate(arch, method="qlora", lora_dropout=False)
    assert nf4.assumptions["dequant_gb"] == pytest.approx(DEQUANT_LAYERS * layer / GB, abs=1e-3)
    assert bf16.assumptions["dequant_gb"] == 0
    zero3 = estimate(arch, method="full", gpus=4, strategy="zero3")
    assert zero3.assumptions["gathered_gb"] == pytest.approx(GATHER_LAYERS * layer / GB, abs=1e-3)
    saved = estimate(arch, method="full", gpus=4, strategy="fsdp", gather_full_weights=True)
    assert saved.assumptions["gathered_gb"] == pytest.approx(2 * arch.param_count() / GB, abs=1e-3)


def test_gpus_without_strategy_replicate_and_warn() -> None:
    est = estimate(llama2(), method="full", gpus=4)
    assert est.assumptions["strategy"] == "none" and any("replicated" in w for w in est.warnings)
    assert estimate(llama2(), method="full", gpus=4, strategy="fsdp").warnings == ()


def test_hf_engine_prefills_the_whole_prompt() -> None:
    arch = resolve_model("llama-3-8b")
    hf = estimate(arch, method="infer", seq_len=32768, engine="hf")
    vllm = estimate(arch, method="infer", seq_len=32768, engine="vllm")
    per_token = 2 * (2 * 4096 + 4096 + 2 * 14336) * INFER_ACT_SCALE
    assert hf.breakdown["activations"] == pytest.approx(32768 * per_token + 128256 * 4)
    assert vllm.breakdown["activations"] == pytest.approx(8192 * per_token + 128256 * 4)
    gen = estimate(arch, method="infer", seq_len=8192, new_tokens=8192)
    assert gen.breakdown["kv_cache"] == 2 * GIB  # prompt + generated tokens
    with pytest.raises(UsageError, match="engine"):
        estimate(arch, method="infer", engine="tgi")


def test_tensors_and_total_split_context_and_allocator() -> None:
    est = estimate(llama2(), method="lora")
    assert est.breakdown["cuda_context"] == CUDA_CONTEXT_GB * GB
    assert est.breakdown["allocator"] == pytest.approx(ALLOCATOR * est.tensors)
    assert est.total == pytest.approx(est.tensors + est.breakdown["cuda_context"] + est.breakdown["allocator"])
    data = est.to_dict()
    assert data["tensors_gb"] < data["total_gb"]


def test_band_and_fits_on_its_upper_part() -> None:
    est = estimate(llama2(), method="lora")
    assert (est.low, est.high) == pytest.approx((BAND_LOW * est.total, BAND_HIGH * est.total))
    needed = est.low + FITS_QUANTILE * (est.high - est.low)
    assert fits_bytes(est) == pytest.approx(needed) and needed > est.total
    assert fits(est, needed / GB + 0.01) and not fits(est, est.total_gb)


def test_full_finetune_breakdown_and_overhead() -> None:
    arch = llama2()
    est = estimate(arch, method="full")
    n = arch.param_count()
    assert est.breakdown["weights"] == 2 * n and est.breakdown["gradients"] == 2 * n
    assert est.breakdown["optimizer"] == 12 * n and est.breakdown["kv_cache"] == 0
    tensors = sum(v for k, v in est.breakdown.items() if k not in ("cuda_context", "allocator"))
    assert est.breakdown["cuda_context"] + est.breakdown["allocator"] == pytest.approx(0.5 * GB + ALLOCATOR * tensors)
    assert est.low < est.total < est.high


@pytest.mark.parametrize(("strategy", "divided"), [
    ("none", ()), ("ddp", ()), ("zero2", ("gradients", "optimizer")),
    ("zero3", ("weights", "gradients", "optimizer")), ("fsdp", ("weights", "gradients", "optimizer")),
])
def test_sharding_divides_by_gpus(strategy: str, divided: tuple[str, ...]) -> None:
    arch = llama2()
    one = estimate(arch, method="full").breakdown
    four = estimate(arch, method="full", gpus=4, strategy=strategy).breakdown
    for state in ("weights", "gradients", "optimizer"):
        assert four[state] == pytest.approx(one[state] / 4 if state in divided else one[state])
    gathered = GATHER_LAYERS * layer_bytes_16bit(arch) if "weights" in divided else 0
    assert four["activations"] == pytest.approx(one["activations"] + gathered)  # per GPU, never sharded


def test_offload_moves_state_to_cpu() -> None:
    est = estimate(llama2(), method="full", strategy="zero3", gpus=2, offloaded=frozenset({"optimizer"}))
    assert est.breakdown["optimizer"] == 0
    assert est.assumptions["cpu_offload_gb"] == pytest.approx(12 * 6_738_415_616 / 2 / GB, abs=0.01)


def test_inference_parts() -> None:
    arch = resolve_model("llama-3-8b")
    est = estimate(arch, method="infer", seq_len=8192)
    assert est.breakdown["kv_cache"] == GIB and est.breakdown["gradients"] == 0 == est.breakdown["optimizer"]
    tp = estimate(arch, method="infer", seq_len=8192, gpus=2)
    assert tp.breakdown["weights"] == est.breakdown["weights"] / 2  # tensor parallel


def test_methods_rank_as_expected() -> None:
    arch = resolve_model("llama-3.1-8b")
    full, lora, qlora = (estimate(arch, method=m).total_gb for m in ("full", "lora", "qlora"))
    infer4 = estimate(arch, method="infer", quant=QUANTS["nf4"]).total_gb
    assert full > 100 > lora > qlora > infer4


@pytest.mark.parametrize(("seq", "measured"), [(1024, 6), (2048, 7), (4096, 9), (8192, 12), (16384, 19),
                                               (32768, 32)])
def test_calibration_llama_factory_qlora_points(seq: int, measured: float) -> None:
    """LLaMA-Factory wiki, Llama-2-7B QLoRA 4-bit, batch 1, FlashAttention-2 (measured; not in the calibration
    set): never under by more than 10%, over by at most 20%."""
    arch = llama2()
    est = estimate(arch, method="qlora", seq_len=seq, trainable_params=default_lora_params(arch, r=8))
    assert 0.9 * measured <= est.total_gb <= 1.2 * measured


def test_json_shape() -> None:
    data = estimate(llama2(), method="lora").to_dict()
    assert set(data) == {"total_gb", "tensors_gb", "low_gb", "high_gb", "fits_gb", "breakdown", "assumptions"}
    assert set(data["breakdown"]) == {"weights", "gradients", "optimizer", "activations", "kv_cache",
                                      "cuda_context", "allocator"}
    assert "GB = 1e9" in data["assumptions"]["units"]


def test_inverse_questions() -> None:
    arch = resolve_model("llama-3.1-8b")
    setup = Setup(method="qlora", quant=QUANTS["nf4"])
    seq = max_seq_len(arch, setup, 16)
    assert estimate(arch, setup, seq_len=seq).total_gb <= 16 < estimate(arch, setup, seq_len=seq + 1).total_gb
    batch = max_batch(arch, Setup(method="infer", seq_len=4096), 80)
    assert estimate(arch, method="infer", seq_len=4096, batch=batch).total_gb <= 80
    assert estimate(arch, method="infer", seq_len=4096, batch=batch + 1).total_gb > 80
    assert smallest_quant_that_fits(arch, Setup(method="lora"), 24).name == "bf16"  # type: ignore[union-attr]
    assert smallest_quant_that_fits(arch, Setup(method="lora"), 12).name == "nf4"  # type: ignore[union-attr]
    assert smallest_quant_that_fits(arch, Setup(method="lora"), 3) is None
    assert max_seq_len(arch, setup, 1) == 0


def test_quant_spec_names_and_errors() -> None:
    assert quant_spec(4).name == "nf4" and quant_spec("16").name == "bf16"
    assert quant_spec("q4_k_m").bits == pytest.approx(4.894)
    with pytest.raises(UsageError):
        quant_spec("q9_z")
    with pytest.raises(UsageError):
        quant_spec(5)
    with pytest.raises(UsageError):
        estimate(llama2(), method="pretrain")


def test_setup_from_recipe_reads_plugin_declarations(tmp_path: Path) -> None:
    registry = load_registry(entry_points=False, extra_modules=[recommend_fakes])
    path = tmp_path / "r.yaml"
    path.write_text("model: {id: llama-2-7b}\nquantizer: {method: nf4}\nadapter: {method: lora, r: 8, targets: "
                    "[q_proj, v_proj]}\ntrain: {seq_len: 1024, batch_size: 2}\n")
    arch = llama2()
    setup = setup_from_recipe(load_recipe(path, registry=registry), arch)
    assert (setup.method, setup.trainable_params, setup.seq_len, setup.batch) == ("qlora", 4_194_304, 1024, 2)
    assert setup.quant.bits == pytest.approx(4.127)
    path.write_text("model: {id: llama-2-7b}\nquantizer: {method: gptq, bits: 8}\n")
    infer = setup_from_recipe(load_recipe(path, registry=registry), arch, seq_len=512)
    assert (infer.method, infer.seq_len) == ("infer", 512)
    assert infer.quant.bits == pytest.approx(8 + 20 / 128)
    path.write_text("model: {id: llama-2-7b}\nserve: {engine: hf}\n")
    served = setup_from_recipe(load_recipe(path, registry=registry), arch, seq_len=16384)
    assert served.engine == "hf"  # a 16k prompt: generate prefills it whole, vLLM in 8k chunks
    assert estimate(arch, served).total_gb > estimate(arch, replace(served, engine="vllm")).total_gb
    path.write_text("model: {id: llama-2-7b}\nserve: {engine: sglang}\n")
    with pytest.raises(RecipeError, match=r"serve\.engine"):
        load_recipe(path, registry=registry)
    path.write_text("model: {id: llama-2-7b}\ntrain: {seq_len: 512, optimizer: adamw-8bit}\n")  # no adapter
    full = setup_from_recipe(load_recipe(path, registry=registry), arch)
    assert (full.method, full.seq_len, full.optimizer) == ("full", 512, "adamw-8bit")
    assert estimate(arch, full).total_gb > estimate(arch, method="lora", seq_len=512).total_gb


def test_recipe_memory_options_reach_the_estimate(tmp_path: Path) -> None:
    """train.chunked_loss / train.activation_offload are the estimator's --chunked-loss / --activation-offload."""
    registry = load_registry(entry_points=False, extra_modules=[recommend_fakes])
    path = tmp_path / "r.yaml"
    plain = "model: {id: llama-2-7b}\nadapter: {method: lora}\ntrain: {seq_len: 2048, gradient_checkpointing: true"
    path.write_text(plain + "}\n")
    arch = llama2()
    before = setup_from_recipe(load_recipe(path, registry=registry), arch)
    path.write_text(plain + ", chunked_loss: true, activation_offload: true}\n")
    lean = setup_from_recipe(load_recipe(path, registry=registry), arch)
    assert (before.chunked_loss, before.activation_offload) == (False, False)
    assert (lean.chunked_loss, lean.activation_offload) == (True, True)
    assert estimate(arch, lean) == estimate(arch, before, chunked_loss=True, activation_offload=True)
    saved = training_activation_bytes(arch, before) - training_activation_bytes(arch, lean)
    assert saved == 2048 * arch.vocab * 8 + (arch.layers - 1) * 2 * arch.hidden * 2048  # logits + layer inputs


def test_unknown_architecture_says_what_it_guessed() -> None:
    arch = ModelArch.from_hf_config({"model_type": "gpt_neox", "hidden_size": 512, "num_hidden_layers": 4,
                                     "num_attention_heads": 8, "vocab_size": 1000})
    warnings = estimate(arch, method="infer").warnings
    assert any("gpt_neox" in w and "fused-QKV" in w for w in warnings)
    assert any("4 x hidden_size" in w for w in warnings) and any("no GQA" in w for w in warnings)
    known = ModelArch.from_hf_config({"model_type": "llama", "hidden_size": 512, "intermediate_size": 1024,
                                      "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
                                      "vocab_size": 1000})
    assert estimate(known, method="infer").warnings == ()


def test_estimate_cli_new_flags() -> None:
    import json

    from click.testing import CliRunner

    from tunekit.cli.main import cli

    def run(*args: object) -> Any:
        return CliRunner().invoke(cli, *args)
    out = run(["estimate", "--model", "llama-2-7b", "--method", "full", "--gpus", "4", "--json"])
    data = json.loads(out.output)
    assert out.exit_code == 0 and data["assumptions"]["strategy"] == "fsdp" and "FSDP" in data["warnings"][0]
    flags = ["--chunked-loss", "--activation-offload", "--optimizer", "paged-adamw"]
    plain = json.loads(run(["estimate", "--model", "llama-2-7b", "--json"]).output)
    lean = json.loads(run(["estimate", "--model", "llama-2-7b", "--json", *flags]).output)
    assert lean["assumptions"]["chunked_loss"] and lean["assumptions"]["activation_offload"]
    assert lean["breakdown"]["activations"] < plain["breakdown"]["activations"]
    assert lean["breakdown"]["optimizer"] == 0  # paged: in memory the driver pages to the CPU
    hf = json.loads(run(["estimate", "--model", "llama-2-7b", "--method", "infer", "--engine", "hf",
                               "--new-tokens", "2048", "--seq-len", "30000", "--json"]).output)
    assert hf["assumptions"]["engine"] == "hf" and hf["assumptions"]["prefill_chunk"] == 0
    assert hf["tensors_gb"] < hf["total_gb"]
    bad = run(["estimate", "--model", "llama-2-7b", "--engine", "tgi"])
    assert bad.exit_code == 2


def test_paged_optimizer_recipe_key_validates_and_reaches_the_trainer() -> None:
    from pydantic import ValidationError

    from tunekit.core.recipe_model import TrainSection
    from tunekit.run.training import OPTIMIZERS

    assert TrainSection(optimizer="paged-adamw-8bit").optimizer == "paged-adamw-8bit"
    assert OPTIMIZERS["paged-adamw"] == "paged_adamw_32bit"  # a transformers ``optim`` name (bitsandbytes)
    with pytest.raises(ValidationError):
        TrainSection(optimizer="paged-sgd")


def test_estimate_quant_and_recommend_agree_on_every_quantizer() -> None:
    """``estimate --quant NAME`` and recommend's candidates translate a quantizer plugin through one function."""
    import json

    from click.testing import CliRunner

    from tunekit.advise.rules.candidates import quant_spec_of
    from tunekit.cli.main import cli

    registry = load_registry()
    arch = resolve_model("llama-3.1-8b")
    names = sorted(registry.of("quantizer"))
    assert "rtn" in names
    for name in names:
        out = CliRunner().invoke(cli, ["estimate", "--model", "llama-3.1-8b", "--method", "infer", "--quant", name,
                                       "--json"])
        assert out.exit_code == 0, out.output
        cli_weights = json.loads(out.output)["breakdown"]["weights"]
        rec_weights = weight_bytes(arch, quant_spec_of(registry.of("quantizer")[name]())) / GB
        assert cli_weights == pytest.approx(rec_weights, abs=0.001), name


def test_calibration_set_meets_the_bar() -> None:
    """bench/estimator.py on the 184 published peaks: MAPE <= 10%, band coverage >= 80%, and at most 10% of the
    training points under-estimated by more than 10% (issue 16)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[2] / "bench" / "estimator.py"
    spec = importlib.util.spec_from_file_location("bench_estimator", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up while the file runs
    spec.loader.exec_module(bench)
    points = bench.load_points()
    assert len(points) == 184
    summary = bench.summarize(bench.evaluate(points))
    assert summary["all"]["mape_pct"] <= 10
    assert summary["all"]["band_coverage"] >= 0.8
    assert summary["training"]["under_by_more_than_10_pct"] <= 0.1


def test_sampler_kv_cache_bits_reach_the_estimate(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("model: {id: llama-2-7b}\n")
    default = setup_from_recipe(load_recipe(path), llama2(), seq_len=8192)
    path.write_text("model: {id: llama-2-7b}\nsampler: {method: sampling, kv_cache: {implementation: quantized, "
                    "nbits: 4}}\n")
    quantized = setup_from_recipe(load_recipe(path), llama2(), seq_len=8192)
    assert (default.kv_bits, quantized.kv_bits) == (16.0, 4.0)
    full, small = estimate(llama2(), default), estimate(llama2(), quantized)
    assert small.breakdown["kv_cache"] == pytest.approx(full.breakdown["kv_cache"] / 4)
    assert small.breakdown["kv_cache"] == pytest.approx(kv_cache_bytes(llama2(), 8192, 1, kv_bits=4))
