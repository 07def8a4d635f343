"""Launch options for serving a recommended recipe with vLLM and llama.cpp.

The flags are the engines' own: vLLM ``--quantization``, ``--max-model-len``, ``--kv-cache-dtype``,
``--hf-overrides`` (rope_scaling), ``--tensor-parallel-size``; llama.cpp ``llama-server -m``, ``-c``,
``-ngl`` (layers on the GPU), ``--rope-scaling``/``--rope-scale``/``--yarn-orig-ctx``, ``-ctk``/``-ctv``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tunekit.advise import serving
from tunekit.advise.estimate import GB, kv_cache_bytes, weight_bytes
from tunekit.advise.rules import engines
from tunekit.advise.rules.engine import hub_id, recipe_file

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts, Recommendation


def gguf_type(bits: float) -> str:
    """The llama.cpp file type closest to (not above) ``bits`` per weight."""
    for limit, name in ((16, "F16"), (8, "Q8_0"), (6.5, "Q6_K"), (5.5, "Q5_K_M"), (4.0, "Q4_K_M"), (3.4, "Q3_K_M")):
        if bits >= limit:
            return name
    return "Q2_K"


def gpu_layers(facts: Facts, rec: Recommendation) -> int:
    """``-ngl``: every layer when the weights fit, else as many as the VRAM left after KV cache and context."""
    arch, memory = facts.model, rec.candidate.memory
    assert memory is not None
    if rec.candidate.split_layers is not None:
        return rec.candidate.split_layers
    if memory.total_gb * (1 + facts.margin) <= facts.budget_gb():
        return arch.layers + 1  # llama.cpp counts the output layer too
    setup = rec.candidate.setup
    reserve = memory.breakdown["cuda_context"] + memory.breakdown["allocator"]
    return serving.gpu_layers(arch, int(weight_bytes(arch, setup.quant)), int(facts.budget_gb() * GB), setup.seq_len,
                              serving.kv_type(setup.kv_bits), reserve_bytes=int(reserve)).ngl


def output_dir(rec: Recommendation) -> str:
    """The folder the printed ``tunekit apply ... --output`` line writes."""
    return f"out/{rec.recipe['name']}"


def serve_options(facts: Facts, rec: Recommendation) -> dict[str, Any]:
    """vLLM, llama.cpp and transformers command lines that match ``rec`` (quantization, length, rope, kv
    dtype); an engine that cannot serve the recipe's weights gets no line but the reason, in ``not_served``."""
    arch, cand = facts.model, rec.candidate
    seq = cand.setup.seq_len
    quant = (cand.stages.get("quantizer") or {}).get("method")
    context = cand.stages.get("context")
    kv_gb = kv_cache_bytes(arch, seq, cand.setup.batch) / GB
    # fitting.quantize_kv halved it to fit; else a cache over a quarter of the memory is halved anyway
    big_kv = cand.setup.kv_bits <= 8 or kv_gb > 0.25 * max(facts.budget_gb(), 1)
    fp8_kv = facts.hardware.fp8 and big_kv
    out = output_dir(rec)
    # a base quantized while loading (bitsandbytes) is read from the hub; any other quantizer's weights
    # exist only in the folder `tunekit apply` writes
    source = hub_id(arch) if not quant or cand.on_load else out
    comment = "  # after `tunekit apply`" if source == out else ""
    factor = (context.get("factor") or max(1.0, seq / arch.max_context)) if context else 1.0
    lines: dict[str, str | None] = {}
    not_served = {engine: why for engine in engines.ENGINES if (why := engines.problem(engine, cand))}

    vllm = [f"vllm serve {source}", f"--max-model-len {seq}"]
    if quant in engines.VLLM_QUANT and engines.quant_bits(cand)[1] < 16:
        vllm.append(f"--quantization {engines.VLLM_QUANT[str(quant)][0]}")
    if context:
        scaling = {"rope_type": context["method"], "factor": factor,
                   "original_max_position_embeddings": arch.max_context}
        vllm.append(f"--hf-overrides '{json.dumps({'rope_scaling': scaling})}'")
    vllm.append(f"--kv-cache-dtype {'fp8' if fp8_kv else 'auto'}")
    if facts.hardware.gpus > 1:
        vllm.append(f"--tensor-parallel-size {facts.hardware.gpus}")
    lines["vllm"] = None if "vllm" in not_served else " ".join(vllm) + comment

    gguf = cand.export.upper() if cand.export else gguf_type(cand.setup.quant.bits)
    # the gguf exporter writes <recipe name>-<TYPE>.gguf into the output folder; a 16-bit recipe's model is
    # converted to a GGUF of the base first
    path = f"{out}/{rec.recipe['name']}-{gguf}.gguf" if cand.export else f"{arch.name}-{gguf}.gguf"
    cpp = [f"llama-server -m {path}", f"-c {seq}"]
    if facts.hardware.gpus:  # -ngl offloads layers to a GPU; a CPU-only build has none to offload to
        cpp.append(f"-ngl {gpu_layers(facts, rec)}")
    cpp.append("-fa on")
    if context and context["method"] in engines.LLAMA_CPP_ROPE:
        rope = engines.LLAMA_CPP_ROPE[context["method"]]
        cpp.append(f"--rope-scaling {rope} --rope-scale {factor:g}")
        if rope == "yarn":
            cpp.append(f"--yarn-orig-ctx {arch.max_context}")
    if big_kv:
        cpp.append("-ctk q8_0 -ctv q8_0")
    lines["llama_cpp"] = None if "llama.cpp" in not_served else " ".join(cpp)

    # transformers serve loads the folder with its quantization_config; rope scaling and length come from the
    # config the recipe's context stage wrote into the output folder
    hf_source = out if quant or context else hub_id(arch)
    lines["hf"] = None if "hf" in not_served else f"transformers serve {hf_source}" + (
        "  # after `tunekit apply`" if hf_source == out else "")
    if cand.offload and lines["hf"]:  # `transformers serve` has no max_memory: generate reads model.offload
        lines["hf"] = f"tunekit generate {recipe_file(rec)} 'Hello'  # model.offload places the layers (--write DIR)"
    return {**lines, "not_served": not_served, "gguf_type": gguf, "kv_cache_gb": round(kv_gb, 2),
            "kv_cache_dtype": "fp8" if fp8_kv else "auto"}


#: the line keys of ``serve_options`` by engine name
LINE_KEYS = {"vllm": "vllm", "llama.cpp": "llama_cpp", "hf": "hf"}


def serve_lines(facts: Facts, rec: Recommendation, engine: str | None) -> list[str]:
    """What recommend prints for ``rec``: the asked engine's line (or why it cannot serve it); with none asked,
    vLLM's and llama.cpp's lines that exist (vLLM only with a GPU), transformers' when neither can."""
    opts = serve_options(facts, rec)
    if engine:
        line = opts[LINE_KEYS[engine]]
        return [line] if line else [f"{engine}: cannot serve this recipe: {opts['not_served'][engine]}"]
    shown = [opts["vllm"]] if facts.hardware.gpus and opts["vllm"] else []
    shown += [opts["llama_cpp"]] if opts["llama_cpp"] else []
    return shown or ([opts["hf"]] if opts["hf"] else [])
