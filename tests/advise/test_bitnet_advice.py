"""BitNet b1.58: the estimator counts ternary weights at 1.58 bits, and recommend's compress goal says that
1.58-bit is trained (QAT or a native BitNet model served with bitnet.cpp), not a post-training quantizer."""

from __future__ import annotations

import pytest

from tunekit.advise.estimate import GB, QUANTS, quant_spec, weight_bytes
from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, load_rules, recommend
from tunekit.core.arch import ModelArch
from tunekit.core.model_facts import resolve_model
from tunekit.core.registry import get_registry

# microsoft/bitnet-b1.58-2B-4T config.json (the shapes that set its weight bytes)
BITNET_2B4T = {"model_type": "bitnet", "hidden_size": 2560, "intermediate_size": 6912, "num_hidden_layers": 30,
               "num_attention_heads": 20, "num_key_value_heads": 5, "vocab_size": 128256,
               "max_position_embeddings": 4096, "rope_theta": 500000.0, "tie_word_embeddings": True}


def test_ternary_is_1_58_bits_per_linear_weight() -> None:
    assert quant_spec(1.58) is QUANTS["ternary"] and quant_spec("ternary").bits == 1.58
    arch = resolve_model("llama-2-7b")
    linear, kept = 6_476_005_376, 262_144_000 + 266_240  # as in test_estimate: linears; embed + lm_head + norms
    assert weight_bytes(arch, QUANTS["ternary"]) == pytest.approx(linear * 1.58 / 8 + kept * 2)


def test_bitnet_2b4t_linears_take_the_published_0_4_gb() -> None:
    arch = ModelArch.from_hf_config(BITNET_2B4T, name="bitnet-b1.58-2B-4T")
    embeddings = arch.vocab * arch.hidden  # tied: one bf16 matrix
    ternary = weight_bytes(arch, QUANTS["ternary"]) - embeddings * 2
    # model card: "Memory (Non-emb): 0.4GB"
    assert ternary / GB == pytest.approx(0.41, abs=0.02)


def facts(goal: str) -> Facts:
    registry = get_registry()
    return Facts(hardware=resolve_hardware(vram=8, ram=64), model=resolve_model("llama-3.1-8b", registry=registry),
                 goal=goal)


def test_compress_answers_with_native_bitnet_and_bitnet_cpp() -> None:
    registry = get_registry()
    rules = load_rules(registry)
    result = recommend(facts("compress"), rules, registry)
    notes = [n for n in result.notes if n.startswith("[bitnet-is-trained-not-quantized]")]
    assert len(notes) == 1
    note = notes[0]
    assert "quantization-aware training" in note and "bitnet.cpp" in note and "bitnet-b1.58-2B-4T" in note
    estimates = result.facts["estimates"]
    assert f"~{estimates['ternary_weights_gb']} GB" in note and "{estimates" not in note
    assert estimates["ternary_weights_gb"] < estimates["bf16_weights_gb"] / 4
    assert not [n for n in recommend(facts("serve"), rules, registry).notes if "bitnet" in n]
