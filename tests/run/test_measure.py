"""One memory measurement for the pipeline, training and bench: peak RSS/CUDA and a model's tensor bytes."""

from __future__ import annotations

import resource
import sys

from tunekit.run import measure
from tunekit.testing import build_tiny_model


def test_peak_rss_is_ru_maxrss_in_bytes() -> None:
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert measure.peak_rss_bytes() >= (raw if sys.platform == "darwin" else raw * 1024) > 0


def test_peak_memory_on_cpu_is_the_peak_rss() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return
    rss_mb = measure.peak_rss_bytes() / 2**20
    assert abs(measure.peak_memory_mb() - rss_mb) < 1.0


def test_size_counts_parameters_and_buffers() -> None:
    model = build_tiny_model()
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert measure.size_mb(model) == round((params * 4 + buffers) / 2**20, 2)
    assert measure.size_mb(model.half()) < measure.size_mb(build_tiny_model())
