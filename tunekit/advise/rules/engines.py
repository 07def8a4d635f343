"""Which serving engine reads a candidate's weights as its recipe writes them (issue 20 item 6).

One table per engine, from the engines' documentation: vLLM reads AWQ at 4 bits only and GPTQ at 4 or 8
(its AWQ and GPTQ/Marlin kernels), bitsandbytes only as 4-bit NF4 quantized while loading (its in-flight
path), fp8 checkpoints, and any 16-bit folder; llama.cpp reads GGUF files only (a 16-bit model converts to
one; AWQ/GPTQ/bitsandbytes weights do not); transformers (``transformers serve``) loads every HF folder a
quantizer writes, but not a GGUF (it would dequantize it to 16 bits). A serve line is printed only for an
engine that accepts the candidate, and ``recommend --engine`` drops the candidates its engine cannot serve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.core.engines import ENGINES

if TYPE_CHECKING:
    from tunekit.advise.rules.candidates import Candidate

#: tunekit quantizer -> vLLM's ``--quantization`` and the bit widths its kernels read
VLLM_QUANT: dict[str, tuple[str, tuple[int, ...]]] = {
    "awq": ("awq", (4,)), "gptq": ("gptq", (4, 8)), "nf4": ("bitsandbytes", (4,)), "fp8": ("fp8", (8,))}
#: llama.cpp's --rope-scaling has none|linear|yarn. Dynamic NTK and Llama-3's per-frequency scaling are
#: NTK-by-parts variants that YaRN generalizes (YaRN paper, section 3): served as yarn at the same factor
#: over the trained context. LongRoPE's per-dimension factors have no llama.cpp flag.
#: A recipe only transformers serves ranks below those vLLM or llama.cpp serve: transformers' generate has no
#: paged KV cache or continuous batching (vLLM paper: 2-4x the throughput of HF-style serving at equal latency)
HF_ONLY_POINTS = 2.0
LLAMA_CPP_ROPE = {"linear": "linear", "yarn": "yarn", "dynamic": "yarn", "llama3": "yarn"}


def quant_bits(cand: Candidate) -> tuple[str | None, int]:
    """The candidate's quantizer and the bits its weights are stored at (16 for a 16-bit or fake-quant one)."""
    quant = (cand.stages.get("quantizer") or {}).get("method")
    return quant, round(cand.setup.quant.bits)


def problem(engine: str, cand: Candidate) -> str | None:
    """Why ``engine`` cannot serve ``cand`` as its recipe writes it; None when it can."""
    quant, bits = quant_bits(cand)
    dense = quant is None or bits >= 16  # no quantizer, or one that stores its result in the 16-bit dtype
    context = (cand.stages.get("context") or {}).get("method")
    if engine == "llama.cpp":
        if context and context not in LLAMA_CPP_ROPE:
            return f"llama.cpp has no --rope-scaling for {context} RoPE"
        if cand.export or dense:
            return None
        return f"llama.cpp reads GGUF files, not {quant} weights (a GGUF recipe writes one)"
    if cand.export:
        return f"{'vLLM' if engine == 'vllm' else 'transformers'} does not serve a GGUF file (llama.cpp's format)"
    if engine == "vllm" and not dense:
        assert quant is not None
        if quant not in VLLM_QUANT:
            why = ("its bitsandbytes path quantizes to 4-bit NF4 while loading" if quant in ("int8", "fp4")
                   else "it has no loader for these weights")
            return f"vLLM does not serve {quant} {bits}-bit: {why}"
        allowed = VLLM_QUANT[quant][1]
        if bits not in allowed:
            return f"vLLM reads {quant} at {' or '.join(map(str, allowed))} bits only, not {bits}"
    return None


def servable(cand: Candidate, engine: str | None) -> str | None:
    """``engine`` given: why it cannot serve ``cand``. None given: why no engine can (None when one can)."""
    if engine:
        return problem(engine, cand)
    whys = [problem(e, cand) for e in ENGINES]
    return None if any(w is None for w in whys) else "; ".join(w for w in whys if w)


def only_hf(cand: Candidate) -> bool:
    """Only transformers serves ``cand`` (e.g. an 8-bit AWQ, a bitsandbytes int8 base)."""
    return problem("hf", cand) is None and all(problem(e, cand) for e in ENGINES if e != "hf")
