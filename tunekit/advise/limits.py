"""Inverse questions to the estimator: the longest sequence, the largest batch, the least quantization that fits.

Each is a search over :func:`tunekit.advise.estimate.estimate`, so it answers with the same formulas.
"""

from __future__ import annotations

from typing import Any

from tunekit.advise.estimate import GB, Setup, estimate, fits_bytes
from tunekit.advise.quant_memory import QUANTS, QuantSpec
from tunekit.core.arch import ModelArch


def _largest(fits: Any, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits(n), assuming monotone; 0 when even lo does not fit."""
    if not fits(lo):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def max_seq_len(arch: ModelArch, setup: Setup, budget_gb: float, limit: int = 1 << 21, *,
                planned: bool = False, step: int = 1) -> int:
    """The longest sequence (tokens, a multiple of ``step``) whose estimate fits ``budget_gb`` per GPU;
    ``planned`` decides on the upper part of the band (``fits_bytes``), as recommend does, instead of the
    point estimate. A ``step`` of 256 asks log2(limit / 256) estimates instead of log2(limit): recommend
    rounds to 256 tokens anyway, and asks this for every candidate that does not fit."""
    def ok(k: int) -> bool:
        est = estimate(arch, setup, seq_len=k * step)
        return (fits_bytes(est) if planned else est.total) <= budget_gb * GB

    return _largest(ok, 1, limit // step) * step if limit >= step else 0


def max_batch(arch: ModelArch, setup: Setup, budget_gb: float, limit: int = 4096) -> int:
    """The largest micro-batch whose estimate fits ``budget_gb`` per GPU."""
    return _largest(lambda n: estimate(arch, setup, batch=n).total_gb <= budget_gb, 1, limit)


def smallest_quant_that_fits(arch: ModelArch, setup: Setup, budget_gb: float,
                             options: list[QuantSpec] | None = None) -> QuantSpec | None:
    """The least aggressive quantization (most bits) that fits; None when even the fewest bits do not."""
    if options is None:
        names = ["bf16", "int8", "nf4", "int3", "int2"] if setup.method != "infer" else \
            ["bf16", "fp8", "gguf-q8_0", "gguf-q6_k", "gguf-q5_k", "gguf-q4_k_m", "nf4", "gguf-q3_k", "gguf-q2_k"]
        options = [QUANTS[n] for n in names]
    if setup.method in ("lora", "qlora"):
        options = [q for q in options if q.bits >= 16 or q.trainable]
    for quant in sorted(options, key=lambda q: -q.bits):
        method = setup.method
        if method in ("lora", "qlora"):
            method = "lora" if quant.bits >= 16 else "qlora"
        if estimate(arch, setup, quant=quant, method=method).total_gb <= budget_gb:
            return quant
    return None
