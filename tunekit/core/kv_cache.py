"""KV-cache implementations transformers' ``generate`` reads from a generation config, and what each costs.

One place for the facts that the sampler (writes ``cache_implementation``/``cache_config`` into
``generation_config.json``), ``generate``/``bench`` (refuse what cannot run here, before loading a model)
and the estimator (KV bits) share. Torch-free.

transformers 5 has no sliding-window or sink cache to choose: a model whose config declares
sliding-window layers (Mistral, Gemma 2/3) gets them from the default dynamic cache on its own, and
``SinkCache`` was removed from transformers in 4.53. So neither is a knob here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunekit.core.errors import UsageError

IMPLEMENTATIONS = ("dynamic", "static", "quantized", "offloaded")
"""transformers' ``cache_implementation`` values tunekit offers (``dynamic`` is the default cache)."""

DEFAULT_QUANT_BITS = 4
"""transformers' ``QuantizedLayer`` default ``nbits`` (hqq/quanto) when the config names none."""


@dataclass(frozen=True)
class QuantBackend:
    """One backend of transformers' ``QuantizedCache``: the bits it takes and the package it needs."""

    bits: tuple[int, ...]
    module: str | None  # import name checked before generate; None: plain torch
    pip: str | None
    note: str


QUANT_BACKENDS: dict[str, QuantBackend] = {
    "fp8": QuantBackend((8,), None, None, "per-tensor float8 (e4m3) in plain torch: runs on CPU and GPU"),
    "hqq": QuantBackend((1, 2, 3, 4, 8), "hqq", "hqq", "group-wise HQQ (KIVI-style, 16-bit residual window)"),
    "quanto": QuantBackend((2, 4), "optimum.quanto", "optimum-quanto",
                           "group-wise quanto (KIVI-style); seen to hang in generate on CPU, prefer hqq there"),
}


def default_backend(nbits: int | None) -> str:
    """fp8 for 8 bits (no extra package), hqq below 8 (the one that runs on CPU)."""
    return "fp8" if nbits in (None, 8) else "hqq"


def generation_keys(implementation: str, nbits: int | None = None, backend: str | None = None,
                    residual_length: int | None = None) -> dict[str, Any]:
    """The ``GenerationConfig`` keys for one cache choice (empty for the default dynamic cache)."""
    if implementation == "dynamic":
        return {}
    if implementation != "quantized":
        return {"cache_implementation": implementation}
    backend = backend or default_backend(nbits)
    config: dict[str, Any] = {"backend": backend}
    if backend != "fp8":  # transformers' fp8 backend quantizes per tensor and refuses group-wise options
        config["nbits"] = nbits or DEFAULT_QUANT_BITS
        if residual_length is not None:
            config["residual_length"] = residual_length
    return {"cache_implementation": "quantized", "cache_config": config}


def kv_bits(generation: Mapping[str, Any]) -> float:
    """Bits per cached key/value element a generation config implies (the estimator's ``kv_bits``).

    The hqq/quanto residual window (the newest ``residual_length`` tokens, 128 by default, kept in 16-bit)
    is left out: at the long contexts where the KV cache matters it is a small share.
    """
    if generation.get("cache_implementation") != "quantized":
        return 16.0
    config = generation.get("cache_config") or {}
    if config.get("backend", "quanto") == "fp8":
        return 8.0
    return float(config.get("nbits", DEFAULT_QUANT_BITS))


def check_runnable(generation: Mapping[str, Any], cuda: bool) -> None:
    """Refuse, with the reason, a cache that cannot run on this machine (before a model is loaded)."""
    implementation = generation.get("cache_implementation")
    if implementation in ("offloaded", "offloaded_static") and not cuda:
        raise UsageError(f"kv_cache '{implementation}' needs a CUDA GPU: transformers' offloaded cache moves "
                         "each layer's keys/values between GPU and CPU RAM with CUDA streams, and on a CPU "
                         "the cache is in RAM already (use kv_cache: {implementation: quantized} to shrink it)")
    if implementation != "quantized":
        return
    name = (generation.get("cache_config") or {}).get("backend", "quanto")
    backend = QUANT_BACKENDS.get(name)
    if backend is None:
        raise UsageError(f"kv_cache backend '{name}' is not one of {', '.join(QUANT_BACKENDS)}")
    if backend.module and _missing(backend.module):
        raise UsageError(f"kv_cache backend '{name}' needs the {backend.pip} package: pip install {backend.pip}")


def _missing(module: str) -> bool:
    """True when ``module`` cannot be imported (a dotted name whose parent is absent included)."""
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def parse_spec(spec: str) -> dict[str, Any]:
    """``--kv-cache`` values: ``dynamic``, ``static``, ``offloaded``, ``quantized[:BITS[:BACKEND]]``."""
    implementation, *rest = spec.split(":")
    if implementation not in IMPLEMENTATIONS or len(rest) > 2 or (rest and implementation != "quantized"):
        raise UsageError(f"--kv-cache '{spec}': use one of {', '.join(IMPLEMENTATIONS[:2])}, offloaded, "
                         "quantized[:BITS[:BACKEND]] (e.g. quantized:4:hqq)")
    nbits = int(rest[0]) if rest and rest[0].isdigit() else None
    backend = rest[1] if len(rest) > 1 else default_backend(nbits)
    if rest and (nbits is None or backend not in QUANT_BACKENDS or nbits not in QUANT_BACKENDS[backend].bits):
        raise UsageError(f"--kv-cache '{spec}': bits and backend must be one of "
                         + ", ".join(f"{b}: {'/'.join(map(str, q.bits))}" for b, q in QUANT_BACKENDS.items()))
    return generation_keys(implementation, nbits, backend)
