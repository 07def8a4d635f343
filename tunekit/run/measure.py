"""The one way a run measures memory: peak use so far, and what a model's tensors occupy.

The pipeline's stage events, the training report, ``metrics.json`` and ``tunekit bench`` all read these, so a
peak in one place is the same number as in another.
"""

from __future__ import annotations

import resource
import sys
from typing import Any


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory_mb() -> float:
    """Peak memory so far, MiB: CUDA max allocated when a GPU was used, else the process's peak RSS."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return round(peak_rss_bytes() / 2**20, 1)


def size_mb(model: Any) -> float:
    """Bytes the model's parameters and buffers occupy in memory, in MiB."""
    total = sum(t.numel() * t.element_size() for t in model.parameters())
    total += sum(t.numel() * t.element_size() for t in model.buffers())
    return round(total / 2**20, 2)
