"""Serve advice: KV cache size, GGUF choice by model size, -ngl offload, and the command lines."""

from __future__ import annotations

from tunekit.advise.serving import (
    GIB,
    gguf_bytes,
    gguf_choices,
    gpu_layers,
    kv_cache_bytes,
    serve_advice,
    serve_commands,
)
from tunekit.core.arch import ModelArch

LLAMA3_8B = ModelArch(name="llama-3-8b", layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8,
                      vocab=128256, max_context=8192)


def test_kv_cache_matches_the_reference_figure() -> None:
    # docs/reference.md: Llama-3-8B fp16 KV cache is 1 GiB at 8k tokens, 16 GiB at 128k
    assert kv_cache_bytes(LLAMA3_8B, 8192) == 1 * GIB
    assert kv_cache_bytes(LLAMA3_8B, 131072) == 16 * GIB
    assert kv_cache_bytes(LLAMA3_8B, 8192, "q8_0") == int(GIB * 34 / 64)
    assert kv_cache_bytes(LLAMA3_8B, 8192, "q4_0") < kv_cache_bytes(LLAMA3_8B, 8192, "q8_0")


def test_published_q4_k_m_size() -> None:
    # llama.cpp quantize README: Llama-3.1-8B (8.03B params) Q4_K_M is 4.58 GiB
    assert abs(gguf_bytes(8_030_000_000, "q4_k_m") / GIB - 4.58) < 0.01


def test_small_models_prefer_five_bits_or_more_and_speed_avoids_two_three_bit() -> None:
    small = [c["type"] for c in gguf_choices(1_700_000_000)]
    assert small[0] in {"q6_k", "q5_k_m", "q8_0"} and "q2_k" not in small
    big = [c["type"] for c in gguf_choices(70_000_000_000)]
    assert big[0] == "q4_k_m" and "q2_k" in big
    fast = [c["type"] for c in gguf_choices(70_000_000_000, goal="speed")]
    assert "q2_k" not in fast and "q3_k_m" not in fast


def test_memory_limit_moves_fitting_types_first() -> None:
    choices = gguf_choices(8_000_000_000, memory_bytes=int(5 * GIB))
    assert choices[0]["fits"] and choices[0]["type"] == "q4_k_m"
    assert not next(c for c in choices if c["type"] == "q8_0")["fits"]


def test_ngl_grows_with_vram_and_shrinks_with_context() -> None:
    size = gguf_bytes(LLAMA3_8B.param_count(), "q4_k_m")
    few = gpu_layers(LLAMA3_8B, size, 4 * GIB, 8192)
    more = gpu_layers(LLAMA3_8B, size, 6 * GIB, 8192)
    full = gpu_layers(LLAMA3_8B, size, 24 * GIB, 8192)
    assert 0 < few.ngl < more.ngl <= 32 and full.all_on_gpu and full.ngl == 33
    long_ctx = gpu_layers(LLAMA3_8B, size, 6 * GIB, 65536)
    q8_cache = gpu_layers(LLAMA3_8B, size, 6 * GIB, 65536, "q8_0")
    assert long_ctx.ngl < more.ngl and q8_cache.ngl > long_ctx.ngl
    assert gpu_layers(LLAMA3_8B, size, 512 * 1024**2, 8192).ngl == 0  # under the reserve: nothing fits


def test_advice_prints_llama_cpp_and_ollama_lines() -> None:
    advice = serve_advice(LLAMA3_8B, vram_gb=6, ram_gb=16, context=8192, kv_type="q8_0")
    ngl = advice["offload"]["ngl"]
    assert advice["choice"] == "q4_k_m" and 0 < ngl <= 33
    server = advice["commands"]["llama.cpp"][0]
    assert f"-ngl {ngl}" in server and "--cache-type-k q8_0" in server and "-fa on" in server
    assert "export OLLAMA_KV_CACHE_TYPE=q8_0" in advice["commands"]["ollama"]
    cpu = serve_advice(LLAMA3_8B, cpu_only=True, ram_gb=8, context=4096)
    assert cpu["offload"]["ngl"] == 0 and "-ngl 0" in cpu["commands"]["llama.cpp"][0]
    assert serve_commands("m.gguf", ngl=10, context=2048)["ollama"][0] == "ollama create tuned -f Modelfile"


def test_one_kv_cache_formula_and_one_gpu_layers() -> None:
    """serving's KV cache is the estimator's formula at the ggml type's bits; recommend's -ngl is serving's."""
    import inspect

    from tunekit.advise import estimate
    from tunekit.advise.rules import serve as rules_serve
    from tunekit.core.model_facts import resolve_model

    arch = resolve_model("llama-3.1-8b")
    assert kv_cache_bytes(arch, 4096, "q8_0") == int(estimate.kv_cache_bytes(arch, 4096, 1, kv_bits=34 / 32 * 8))
    assert "serving.gpu_layers(" in inspect.getsource(rules_serve.gpu_layers)

