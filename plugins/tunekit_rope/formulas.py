"""Pure-Python RoPE frequency formulas (no torch), for declarations and defaults.

The YaRN ramp follows transformers' ``_compute_yarn_parameters`` (Peng et al. 2023): dimensions that
rotate more than ``beta_fast`` times over the original context keep their frequency, those that rotate
fewer than ``beta_slow`` times are divided by ``factor``, and a linear ramp joins them. LongRoPE's default
long factors reuse it (per-dimension divisor = base frequency / YaRN frequency).
"""

from __future__ import annotations

import math


def correction_dim(rotations: float, dim: int, base: float, original: int) -> float:
    """The dimension index whose wavelength fits ``rotations`` turns into ``original`` positions."""
    return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))


def yarn_ramp_factors(factor: float, original: int, base: float, dim: int, *, beta_fast: float = 32.0,
                      beta_slow: float = 1.0) -> list[float]:
    """Per-frequency divisor (``dim // 2`` values): 1.0 for fast dimensions, ``factor`` for slow ones."""
    low: float = max(math.floor(correction_dim(beta_fast, dim, base, original)), 0)
    high: float = min(math.ceil(correction_dim(beta_slow, dim, base, original)), dim - 1)
    if low == high:
        high += 0.001
    factors = []
    for i in range(dim // 2):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0 = extrapolate (keep), 1 = interpolate
        keep = 1.0 - ramp
        inv = (1.0 / factor) * (1 - keep) + 1.0 * keep  # relative to the base frequency
        factors.append(1.0 / inv)
    return factors
