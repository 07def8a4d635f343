"""The two measured backends of ``tunekit bench``: transformers and llama.cpp (lazy heavy imports).

Both take the same held-out text, tokenize it with the output's own tokenizer, score it with the
pipeline's perplexity windows (:mod:`tunekit.run.evaluate`) and time greedy generation from the same
number of prompt tokens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError
from tunekit.core.kv_cache import check_runnable
from tunekit.serve.bench import find_gguf, prompt_ids


def run_transformers(path: Path, *, source: str, prompt_tokens: int, new_tokens: int, seq_len: int,
                     eval_tokens: int, threads: int, kv_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """``kv_cache``: generation-config cache keys (``--kv-cache``); default: the folder's generation_config.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    path = Path(path)
    kwargs: dict[str, Any] = {}
    where = path
    if path.suffix == ".gguf":
        where, kwargs = path.parent, {"gguf_file": path.name}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cache_keys = kv_cache if kv_cache is not None else _folder_cache_keys(where)
    check_runnable(cache_keys, device == "cuda")
    kwargs["trust_remote_code"] = False  # a benchmark never runs a model folder's own code
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    if kwargs:
        model: Any = AutoModelForCausalLM.from_pretrained(where, dtype="auto", **kwargs)
    else:  # the plugin's own saved format, a model folder or an adapter folder (base + adapter), as generate loads it
        from tunekit.run.generate import load_output
        from tunekit.run.saved_model import load_plugin_format

        model = load_plugin_format(where)
        if model is None:
            model = load_output(where, "auto")
    model = model.to(device).eval()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    result: dict[str, Any] = {**transformers_perplexity(model, ids[:eval_tokens], seq_len)}
    result.update(_hf_generate(model, prompt_ids(ids, prompt_tokens), new_tokens, device, cache_keys))
    if device == "cuda":
        result["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
    return result


def transformers_perplexity(model: Any, ids: list[int], seq_len: int, stride: int | None = None) -> dict[str, Any]:
    """Perplexity of ``ids`` under a transformers model: the pipeline's own evaluation."""
    from tunekit.run.evaluate import perplexity_of_ids

    start = time.perf_counter()
    result = perplexity_of_ids(model, ids, seq_len=seq_len, stride=stride)
    return {"perplexity": result.perplexity, "eval_tokens": result.tokens,
            "eval_seconds": round(time.perf_counter() - start, 2)}


def _folder_cache_keys(folder: Path) -> dict[str, Any]:
    """The ``cache_implementation``/``cache_config`` an output's generation_config.json names (none: dynamic)."""
    file = folder / "generation_config.json"
    data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    return {k: data[k] for k in ("cache_implementation", "cache_config") if data.get(k) is not None}


def build_cache(model: Any, keys: dict[str, Any], max_len: int) -> Any:
    """The cache object ``generate`` would build for these generation-config keys (bench steps by hand)."""
    from transformers import DynamicCache, QuantizedCache, StaticCache

    config = model.config.get_text_config(decoder=True)
    implementation = keys.get("cache_implementation") or "dynamic"
    if implementation == "quantized":
        options = dict(keys.get("cache_config") or {})
        return QuantizedCache(backend=options.pop("backend", "quanto"), config=config, **options)
    if implementation == "static":
        return StaticCache(config=config, max_cache_len=max_len)
    return DynamicCache(config=config, offloading=implementation == "offloaded")


def cache_bytes(cache: Any) -> int:
    """Bytes the cache's tensors hold (16-bit residual and quantized parts alike), counted once each."""
    import torch

    seen: set[int] = set()

    def walk(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            if id(value) in seen:
                return 0
            seen.add(id(value))
            return value.numel() * value.element_size()
        if isinstance(value, (list, tuple)):
            return sum(walk(v) for v in value)
        if isinstance(value, dict):
            return sum(walk(v) for v in value.values())
        return 0

    return sum(walk(v) for layer in cache.layers for v in vars(layer).values())


def _hf_generate(model: Any, ids: list[int], new_tokens: int, device: str,
                 cache_keys: dict[str, Any] | None = None) -> dict[str, Any]:
    """Greedy decoding with the KV cache the output names, timed step by step (prefill = time to first token)."""
    import torch

    out: list[int] = []
    cache = build_cache(model, cache_keys or {}, len(ids) + new_tokens)
    with torch.inference_mode():
        start = time.perf_counter()
        result = model(input_ids=torch.tensor([ids], device=device), past_key_values=cache, use_cache=True)
        token = int(result.logits[0, -1].argmax())
        first = time.perf_counter()
        out.append(token)
        past = result.past_key_values
        while len(out) < new_tokens:
            result = model(input_ids=torch.tensor([[token]], device=device), past_key_values=past, use_cache=True)
            past = result.past_key_values
            token = int(result.logits[0, -1].argmax())
            out.append(token)
        end = time.perf_counter()
    ttft, gen_s = first - start, end - first
    return {
        "ttft_s": round(ttft, 4),
        "prompt_tokens_per_s": round(len(ids) / ttft, 1),
        "gen_tokens_per_s": round((len(out) - 1) / gen_s, 1) if len(out) > 1 and gen_s > 0 else None,
        "prompt_tokens": len(ids),
        "new_tokens": len(out),
        "kv_cache": (cache_keys or {}).get("cache_implementation") or "dynamic",
        "kv_cache_bytes": cache_bytes(past),
    }


def run_llamacpp(path: Path, *, source: str, prompt_tokens: int, new_tokens: int, seq_len: int,
                 eval_tokens: int, threads: int) -> dict[str, Any]:
    from tunekit.serve.llamacpp import generate, load, perplexity

    gguf = find_gguf(Path(path))
    if gguf is None:
        raise UsageError(f"{path}: no .gguf file to run with llama.cpp (export one with output.formats: [gguf])")
    llm = load(gguf, n_ctx=max(seq_len, prompt_tokens + new_tokens), logits_all=True, threads=threads)
    ids = [int(t) for t in llm.tokenize(source.encode("utf-8"), add_bos=False, special=False)]
    ppl = perplexity(llm, ids[:eval_tokens], seq_len)
    gen = generate(llm, prompt_ids(ids, prompt_tokens), new_tokens)
    gen.pop("token_ids", None)
    gen.pop("text", None)
    return {"perplexity": ppl["perplexity"], "eval_tokens": ppl["tokens"], "eval_seconds": ppl["seconds"],
            "prompt_tokens": prompt_tokens, "gguf": str(gguf), **gen}
