"""tunekit's ``dynamic-int8`` quantizer: PyTorch dynamic quantization of ``nn.Linear`` for CPU inference.

Registered through the ``tunekit`` entry point group like a third party's plugin. This module is
torch-free; the quantization, saving and reloading live in ``tunekit_dynamic.dynamic``.
"""

from __future__ import annotations

from tunekit import hookimpl
from tunekit.core.kinds import Quantizer
from tunekit_dynamic.plugin import DynamicInt8Quantizer

__all__ = ["DynamicInt8Quantizer"]


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [DynamicInt8Quantizer]
