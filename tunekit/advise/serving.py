"""Serve advice for llama.cpp and Ollama: which GGUF type, how many layers on the GPU (``-ngl``), and
the command lines. Torch-free, pure functions of a :class:`tunekit.core.arch.ModelArch` and the machine,
for ``tunekit recommend --goal serve``.

Sizes: a GGUF holds ``params * bpw / 8`` bytes. Bits per weight of a *file* are above the block
type's (K-quant mixes keep some tensors at Q6_K): the published Llama-3.1-8B figures are used where
known (llama.cpp tools/quantize/README.md: Q4_K_M 4.894, Q8_0 8.50), the block figure otherwise.
KV cache (docs/reference.md) = 2 * layers * kv_heads * head_dim * context * bytes per element, with the
ggml block sizes for quantized caches (q8_0: 34 bytes per 32 values, q4_0: 18 per 32).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.core.arch import ModelArch

GIB = 1024**3

#: file bits per weight: Q4_K_M and Q8_0 published (docs/reference.md); the other mixes are approximate [D]
#: (block type plus the share llama.cpp keeps at Q6_K/Q8_0, token embeddings included); measured
#: SmolLM2 figures are in docs/serving.md
FILE_BPW = {
    "f16": 16.0, "bf16": 16.0, "q8_0": 8.50, "q6_k": 6.5625, "q5_k_m": 5.70, "q5_k_s": 5.54,
    "q4_k_m": 4.894, "q4_k_s": 4.58, "iq4_xs": 4.25, "q4_0": 4.55, "q3_k_m": 3.91, "q3_k_s": 3.50,
    "q2_k": 3.00,
}
#: relative perplexity increase on Llama-3-8B (llama.cpp, docs/reference.md: FP16 6.2332 and deltas)
QUALITY_COST = {
    "f16": 0.0, "bf16": 0.0, "q8_0": 0.0027 / 6.2332, "q6_k": 0.0217 / 6.2332, "q5_k_m": 0.057 / 6.2332,
    "q4_k_m": 0.175 / 6.2332, "q4_0": 0.469 / 6.2332, "q3_k_m": 0.657 / 6.2332, "q2_k": 3.52 / 6.2332,
}
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
GPU_RESERVE_BYTES = int(1.0 * GIB)
"""Kept free on the GPU: CUDA context and llama.cpp's compute buffers (``--fit`` keeps 1024 MiB)."""


def gguf_bytes(params: int, type_name: str) -> int:
    """Expected file size of a GGUF of ``params`` parameters."""
    return int(params * FILE_BPW[type_name] / 8)


def kv_cache_bytes(arch: ModelArch, context: int, kv_type: str = "f16", batch: int = 1) -> int:
    """Bytes of llama.cpp's KV cache for ``context`` tokens: the estimator's formula at the ggml type's bits."""
    from tunekit.advise import estimate

    if kv_type not in KV_BYTES:
        raise ValueError(f"KV cache type must be one of {', '.join(KV_BYTES)}, got '{kv_type}'")
    return int(estimate.kv_cache_bytes(arch, context, batch, kv_bits=KV_BYTES[kv_type] * 8))


def kv_type(kv_bits: float) -> str:
    """llama.cpp's ``--cache-type-k/v`` for a KV cache of ``kv_bits`` bits."""
    return "f16" if kv_bits >= 16 else "q8_0" if kv_bits >= 8 else "q4_0"


def gguf_choices(params: int, *, goal: str = "quality", memory_bytes: int | None = None) -> list[dict[str, Any]]:
    """GGUF types, best first, with reasons: model size decides, small models want Q5_K_M or more,
    2-3 bit types are avoided when speed is the goal (their dequantization is slower and quality drops)."""
    billions = params / 1e9
    if billions < 1.0:
        order = ["q8_0", "q6_k", "q5_k_m", "q4_k_m"]
        why = "under 1B parameters every bit counts and the file is small anyway"
    elif billions < 4.0:
        order = ["q6_k", "q5_k_m", "q8_0", "q4_k_m"]
        why = "small models lose more to 4-bit than large ones: Q5_K_M or higher"
    elif billions < 20.0:
        order = ["q4_k_m", "q5_k_m", "q6_k", "q8_0", "q3_k_m"]
        why = "Q4_K_M is llama.cpp's recommended default at this size (+0.175 ppl on Llama-3-8B)"
    else:
        order = ["q4_k_m", "q3_k_m", "q5_k_m", "iq4_xs", "q2_k"]
        why = "large models tolerate 3-4 bits; Q4_K_M unless memory forces less"
    if goal == "speed":
        order = [t for t in order if t not in {"q3_k_m", "q2_k"}] or ["q4_k_m"]
    out = []
    for type_name in order:
        size = gguf_bytes(params, type_name)
        entry = {"type": type_name, "file_gib": round(size / GIB, 2), "bpw": FILE_BPW[type_name],
                 "quality_cost": round(QUALITY_COST.get(type_name, float("nan")), 4), "reason": why}
        entry["fits"] = memory_bytes is None or size < memory_bytes
        out.append(entry)
    if memory_bytes is not None:
        out.sort(key=lambda e: not e["fits"])  # keep the size order among those that fit
    return out


@dataclass
class Offload:
    ngl: int
    """Value for ``-ngl``: layers on the GPU; ``layers + 1`` also puts the output layer there."""
    layers: int
    all_on_gpu: bool
    gpu_bytes: int
    cpu_bytes: int
    kv_bytes: int


def gpu_layers(arch: ModelArch, file_bytes: int, vram_bytes: int, context: int, kv_type: str = "f16",
               reserve_bytes: int = GPU_RESERVE_BYTES) -> Offload:
    """How many layers fit on the GPU with their share of the KV cache (what ``-ngl`` should be).

    Weights per layer are the file divided over ``layers + 1`` (the output/embedding share counts as
    one more layer, as llama.cpp counts the output layer in ``-ngl``); the KV cache of an offloaded
    layer lives on the GPU too.
    """
    kv = kv_cache_bytes(arch, context, kv_type)
    per_layer = file_bytes / (arch.layers + 1) + kv / arch.layers
    free = max(0, vram_bytes - reserve_bytes)
    n = min(arch.layers, int(free // per_layer)) if per_layer > 0 else arch.layers
    if n == arch.layers and free - n * per_layer >= file_bytes / (arch.layers + 1):
        n = arch.layers + 1
    on_gpu = min(n, arch.layers) * per_layer + (file_bytes / (arch.layers + 1) if n > arch.layers else 0)
    return Offload(ngl=n, layers=arch.layers, all_on_gpu=n > arch.layers, gpu_bytes=int(on_gpu),
                   cpu_bytes=int(file_bytes + kv - on_gpu), kv_bytes=kv)


def serve_commands(gguf_file: str, *, ngl: int, context: int, kv_type: str = "f16",
                   name: str = "tuned") -> dict[str, list[str]]:
    """llama.cpp and Ollama command lines for the chosen file and offload."""
    server = f"llama-server -m {gguf_file} -c {context} -ngl {ngl}"
    env = []
    if kv_type != "f16":  # a quantized V cache needs flash attention in llama.cpp
        server += f" -fa on --cache-type-k {kv_type} --cache-type-v {kv_type}"
        env = ["export OLLAMA_FLASH_ATTENTION=1", f"export OLLAMA_KV_CACHE_TYPE={kv_type}"]
    return {
        "llama.cpp": [server, f"llama-cli -m {gguf_file} -c {context} -ngl {ngl} -cnv"],
        "ollama": [*env, f"ollama create {name} -f Modelfile", f"ollama run {name}"],
    }


def serve_advice(arch: ModelArch, *, vram_gb: float | None = None, ram_gb: float | None = None,
                 cpu_only: bool = False, context: int = 4096, kv_type: str = "f16",
                 goal: str = "quality") -> dict[str, Any]:
    """The whole answer for ``recommend --goal serve``: ranked GGUF types, ``-ngl`` for the first
    that fits, and the command lines."""
    params = arch.param_count()
    kv = kv_cache_bytes(arch, context, kv_type)
    vram = 0 if cpu_only or not vram_gb else int(vram_gb * GIB)
    budget = int(ram_gb * GIB) + vram - kv if ram_gb else None
    choices = gguf_choices(params, goal=goal, memory_bytes=budget)
    best = next((c for c in choices if c["fits"]), choices[0])
    size = gguf_bytes(params, best["type"])
    if vram:
        offload = gpu_layers(arch, size, vram, context, kv_type)
    else:
        offload = Offload(0, arch.layers, False, 0, size + kv, kv)
    file_name = f"{arch.name}-{best['type'].upper()}.gguf"
    return {
        "params": params,
        "context": context,
        "kv_type": kv_type,
        "kv_cache_gib": round(kv / GIB, 3),
        "choices": choices,
        "choice": best["type"],
        "offload": asdict(offload),
        "commands": serve_commands(file_name, ngl=offload.ngl, context=context, kv_type=kv_type),
        "notes": [f"{best['type']}: {best['reason']}"] + (
            [] if math.isnan(best["quality_cost"]) else [f"expected perplexity cost ~{best['quality_cost']:.1%}"]),
    }
