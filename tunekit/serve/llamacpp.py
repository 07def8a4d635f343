"""llama.cpp (through llama-cpp-python) as the real client of a GGUF: load, generate, measure perplexity.

Perplexity uses the pipeline's protocol (:mod:`tunekit.run.evaluate`: windows of ``seq_len`` token ids
advancing by ``stride``; disjoint windows score every token but each window's first) on the same
token ids the transformers model is scored on, so the two figures differ only by the weights and the kernels.
``logits_all=True`` makes llama.cpp keep every position's logits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tunekit.core.errors import MissingDependencyError


def load(path: Path, *, n_ctx: int = 2048, logits_all: bool = False, threads: int | None = None) -> Any:
    """A ``llama_cpp.Llama`` on ``path`` (CPU unless llama-cpp-python was built with a GPU backend)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise MissingDependencyError("running a GGUF needs llama-cpp-python: pip install 'tunekit[gguf]'") from None
    threads = threads or min(2, os.cpu_count() or 1)
    return Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, n_threads=threads,
                 n_threads_batch=threads, n_batch=min(n_ctx, 512), verbose=False)


def perplexity(llm: Any, ids: list[int], seq_len: int, stride: int | None = None) -> dict[str, float]:
    """Perplexity of ``ids`` from llama.cpp's logits, windows planned exactly as
    :func:`tunekit.run.evaluate.perplexity_of_ids` plans them (disjoint when ``stride`` is ``seq_len``)."""
    from tunekit.run.evaluate import _windows  # the pipeline's window plan, so both figures share it

    total_nll = 0.0
    count = 0
    start = time.perf_counter()
    for begin, end, scored in _windows(len(ids), seq_len, stride or seq_len):
        window = ids[begin:end]
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)[-scored:]
        logits -= logits.max(axis=-1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        targets = np.asarray(window[1:])[-scored:]
        total_nll -= float(logprobs[np.arange(len(targets)), targets].sum())
        count += len(targets)
    return {"perplexity": float(np.exp(total_nll / count)), "tokens": count,
            "seconds": round(time.perf_counter() - start, 2)}


def generate(llm: Any, prompt_ids: list[int], new_tokens: int) -> dict[str, Any]:
    """Greedy generation with timings: time to first token, prompt and generation tokens/s."""
    llm.reset()
    out: list[int] = []
    start = time.perf_counter()
    first = None
    for token in llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
        if first is None:
            first = time.perf_counter()
        out.append(int(token))
        if len(out) >= new_tokens or token == llm.token_eos():
            break
    end = time.perf_counter()
    first = first or end
    ttft = first - start
    gen_s = end - first
    return {
        "ttft_s": round(ttft, 4),
        "prompt_tokens_per_s": round(len(prompt_ids) / ttft, 1) if ttft > 0 else None,
        "gen_tokens_per_s": round((len(out) - 1) / gen_s, 1) if len(out) > 1 and gen_s > 0 else None,
        "new_tokens": len(out),
        "token_ids": out,
        "text": llm.detokenize(out).decode("utf-8", errors="replace"),
    }
