"""tunekit's ``gptq`` and ``awq`` quantizers, both through GPTQModel (what transformers 5 uses for them).

Registered through the ``tunekit`` entry point group like a third party's plugin. This module is
torch-free; ``tunekit_gptq.backend`` (GPTQModel, torch) is imported only when a model is quantized.
"""

from __future__ import annotations

from tunekit import Quantizer, hookimpl
from tunekit_gptq.plugin import AWQQuantizer, GPTQQuantizer

__all__ = ["AWQQuantizer", "GPTQQuantizer"]


@hookimpl
def tunekit_quantizers() -> list[type[Quantizer]]:
    return [GPTQQuantizer, AWQQuantizer]
